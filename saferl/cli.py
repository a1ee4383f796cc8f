"""`saferl` command line: train, eval, the offline path (collect, bc, finetune), benchmarks and reports.

Every user error ends as one line on stderr and exit status 2; a Ctrl-C during training keeps the last
checkpoint (written every epoch, atomically) so `--resume` continues it.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
import time
import traceback
from pathlib import Path

from saferl.errors import SafeRLError


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other saferl error (exit status 2 as before)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_args(argv):
    parser = OneLineParser(prog="saferl", description="Safe reinforcement learning for robot control.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a policy; writes a run directory")
    train.add_argument("--algo", help="ppo, ppo_lag, ... (with --resume: the run's own, when left out)")
    train.add_argument("--env", help="task id, e.g. SafetyHalfCheetahVelocity-v1")
    train.add_argument("--steps", type=int, help="total environment steps")
    train.add_argument("--seed", type=int)
    train.add_argument("--seeds", help="several seeds trained together in one process, e.g. 0,1,2: one run "
                       "directory per seed under --run-dir")
    train.add_argument("--num-envs", type=int)
    train.add_argument("--config", help="YAML file with overrides")
    train.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                       help="e.g. ppo.clip_ratio=0.1; env.cost_limit=10,25,50 trains one member per limit")
    train.add_argument("--run-dir", help="default: runs/<env>/<algo>-seed<seed>-<time>")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    train.add_argument("--replan-schedule", action="store_true",
                       help="with --resume --steps beyond the run's plan: re-plan the learning-rate schedule")
    train.add_argument("--restart-unreadable", action="store_true",
                       help="with --resume: a member whose checkpoints are all unreadable retrains from epoch 0 "
                       "(the others keep theirs); without it, that is an error")

    evaluate = sub.add_parser("eval", help="evaluate a run's policy; writes eval.json")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--deterministic", action="store_true")
    evaluate.add_argument("--seed", type=int)

    bench = sub.add_parser("bench", help="measure throughput on this machine (a benchmark, not a test)")
    bench.add_argument("--env", default="SafetyHalfCheetahVelocity-v1")
    bench.add_argument("--steps", type=int, default=100_000, help="steps for the PPO/SB3 comparison")
    bench.add_argument("--constrained-steps", type=int, default=40_000, help="steps for PPO-Lag and CPO")
    bench.add_argument("--num-envs", type=int, default=16)
    bench.add_argument("--no-sb3", action="store_true", help="skip the Stable-Baselines3 run")
    bench.add_argument("--repeats", type=int, default=1,
                       help="run the side-by-side rates this many times, interleaved; report median and min")
    bench.add_argument("--out", help="JSON file (default bench-results/<env>-<time>.json)")

    report = sub.add_parser("report", help="constraint-violation report of runs: report.html, report.md, report.json")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", help="output folder (default: the run directory, or reports/<time> for several)")
    report.add_argument("--eval-episodes", type=int, default=10,
                        help="evaluation rollouts per run (0: none; an existing eval.json is still read)")
    report.add_argument("--deterministic", action="store_true", help="evaluate the mean action")
    report.add_argument("--video", action="store_true", help="render one evaluation episode (MuJoCo offscreen)")

    collect = sub.add_parser("collect", help="roll out a run's policy (or a scripted controller) and write a "
                             "demonstration dataset (HDF5)")
    collect.add_argument("run_dir", nargs="?", help="the run whose policy demonstrates (or use --scripted)")
    collect.add_argument("--scripted", metavar="ENV_ID", help="demonstrate with the task's scripted controller "
                         "(the safe Fetch tasks) instead of a run's policy")
    collect.add_argument("--unsafe-fraction", type=float,
                         help="with --scripted: share of episodes from the unsafe variant (through the box, fast)")
    collect.add_argument("--episodes", type=int, required=True)
    collect.add_argument("--out", required=True, help="dataset file, e.g. demos.h5")
    collect.add_argument("--noise", type=float, help="std of Gaussian noise added to the mean action")
    collect.add_argument("--deterministic", action="store_true", help="the mean action, no noise")
    collect.add_argument("--seed", type=int)
    collect.add_argument("--force", action="store_true", help="overwrite an existing --out file")

    bc = sub.add_parser("bc", help="behaviour cloning from a dataset; writes a run directory")
    bc.add_argument("--dataset", required=True, help="HDF5 file (ours or DSRL/OSRL layout)")
    bc.add_argument("--env", help="task id (default: the one the dataset names)")
    bc.add_argument("--filter", help="all (default) or safe: only episodes with cost <= the cost limit")
    bc.add_argument("--cost-limit", type=float, help="budget for --filter safe (and for a later fine-tune)")
    bc.add_argument("--epochs", type=int)
    bc.add_argument("--seed", type=int)
    bc.add_argument("--config", help="YAML file with overrides")
    bc.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="e.g. bc.lr=3e-4")
    bc.add_argument("--run-dir", help="default: runs/<env>/bc-seed<seed>-<time>")

    finetune = sub.add_parser("finetune", help="safe RL starting from a BC run; writes a run directory")
    finetune.add_argument("bc_run_dir")
    finetune.add_argument("--algo", required=True, help="ppo, ppo_lag or cpo")
    finetune.add_argument("--steps", type=int, help="total environment steps, warm-up included")
    finetune.add_argument("--seed", type=int)
    finetune.add_argument("--num-envs", type=int)
    finetune.add_argument("--config", help="YAML file with overrides")
    finetune.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                          help="e.g. finetune.bc_kl_coef=0")
    finetune.add_argument("--run-dir", help="default: runs/<env>/finetune-<algo>-seed<seed>-<time>")
    finetune.add_argument("--resume", action="store_true", help="continue the fine-tune in --run-dir")
    finetune.add_argument("--restart-unreadable", action="store_true",
                          help="with --resume: restart from the clone when the run's checkpoints are all unreadable")

    offline = sub.add_parser("bench-offline", help="expert -> demos -> BC -> fine-tune vs scratch (a benchmark)")
    offline.add_argument("--env", default="SafetyHalfCheetahVelocity-v1")
    offline.add_argument("--expert", help="an existing run directory to use as the expert (skips training one)")
    offline.add_argument("--expert-steps", type=int, default=1_000_000, help="PPO-Lag steps for the expert")
    offline.add_argument("--episodes", type=int, default=20, help="demonstration episodes")
    offline.add_argument("--noise", type=float, default=0.1, help="action-noise std of the demonstrations")
    offline.add_argument("--scripted", action="store_true",
                         help="demonstrations from the task's scripted controller (safe Fetch tasks), not an RL expert")
    offline.add_argument("--unsafe-fraction", type=float,
                         help="with --scripted: share of demonstration episodes from the unsafe variant")
    offline.add_argument("--filter", default="all", help="BC filter: all or safe")
    offline.add_argument("--bc-epochs", type=int, default=200)
    offline.add_argument("--steps", type=int, default=500_000, help="budget of the fine-tune and of scratch")
    offline.add_argument("--num-envs", type=int, default=16)
    offline.add_argument("--seed", type=int, default=0)
    offline.add_argument("--cost-limit", type=float)
    offline.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                         help="for expert, fine-tune, scratch")
    offline.add_argument("--work-dir", help="where the runs go (default bench-results/offline-<env>-<time>/)")
    offline.add_argument("--out", help="JSON file (default <work-dir>/bench-offline.json)")

    grid = sub.add_parser("benchmark", help="train a grid of algorithms x tasks x seeds on Ray: results.json, "
                          "results.md, report.html (run again to skip finished cells and resume the others)")
    grid.add_argument("grid", help="YAML file: algos, envs, seeds, steps, optional set (list of key=value)")
    grid.add_argument("--out", required=True, help="output folder; cells go to <out>/<env>/<algo>/")
    grid.add_argument("--address", help="an existing Ray cluster (default: start a local Ray)")
    grid.add_argument("--max-parallel", type=int, help="cells in flight at once (default: CPUs // --cpus-per-cell)")
    grid.add_argument("--cpus-per-cell", type=int, default=2, help="CPUs Ray reserves per cell (default 2)")

    export = sub.add_parser("export", help="a run's deterministic policy as one ONNX or TorchScript file for a "
                            "robot (normaliser and action clipping inside; see docs/deploy.md)")
    export.add_argument("run_dir")
    export.add_argument("--format", required=True, help="onnx or torchscript")
    export.add_argument("--out", required=True, help="file to write, e.g. policy.onnx")
    export.add_argument("--force", action="store_true", help="overwrite an existing --out")
    return parser.parse_args(argv)


def cmd_train(args) -> int:
    from saferl.algorithms import ALGORITHMS
    from saferl.config import build_config
    from saferl.launch import check_resume_flags, new_members, resumed_members, split_cost_limits, start_members
    from saferl.members import parse_int_list
    from saferl.ownership import claim
    from saferl.recovery import restart_unreadable

    if args.algo is None and not args.resume:
        raise SafeRLError(f"--algo is required; choose from {', '.join(ALGORITHMS)}")
    if args.algo is not None and args.algo not in ALGORITHMS:
        close = difflib.get_close_matches(args.algo, ALGORITHMS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SafeRLError(f"unknown algorithm '{args.algo}'{hint}; choose from {', '.join(ALGORITHMS)}")
    check_positive(args, "steps", "num_envs")
    seeds = parse_int_list(args.seeds, "--seeds") if args.seeds is not None else None
    if seeds is not None and args.seed is not None:
        raise SafeRLError("give --seed or --seeds, not both")
    check_resume_only(args, "replan_schedule", "restart_unreadable")
    if args.resume:
        if not args.run_dir:
            raise SafeRLError("--resume needs --run-dir")
        members = resumed_members(Path(args.run_dir), args.algo, args.steps)
        args.algo = members[0].config.train.algo
        for note in check_resume_flags(members, args.env, args.num_envs, args.seed, seeds, args.config, args.set,
                                       args.replan_schedule):
            print(note)
        if args.steps:
            print(f"note: --resume with --steps {args.steps}: the run now trains to {args.steps} steps per member")
    else:
        sets, cost_limits = split_cost_limits(args.set)
        config = build_config(args.algo, args.config, sets, flag_overrides(args))
        members = new_members(config, seeds, cost_limits, Path(args.run_dir) if args.run_dir else None)
    run_dir = members[0].run_dir if len(members) == 1 else members[0].run_dir.parent
    with claim(run_dir, *(m.run_dir for m in members)):
        if args.resume:
            restart_unreadable(members, args.restart_unreadable)
        else:
            start_members(members)
        return train_members(args, members, run_dir)


def train_members(args, members, run_dir: Path) -> int:
    """Train the members of a claimed run directory; the summary lines, or the way to resume after Ctrl-C."""
    from saferl.runner import Runner

    runner = Runner(members, resume=args.resume)
    print(f"run directory: {run_dir}" + (f" ({len(members)} members)" if len(members) > 1 else ""), flush=True)
    print_training_notes(members[0].config, args.steps, runner)
    try:
        rows = runner.train()
    except KeyboardInterrupt:
        print(f"\ninterrupted at epoch {runner.epoch}; resume with: saferl train --algo {args.algo} "
              f"--run-dir {run_dir} --resume", file=sys.stderr)
        return 130
    print(f"run directory: {run_dir}")
    if not rows[0]:
        print(NOTHING_TO_TRAIN.format(steps=runner.env_steps))
        return 0
    for member, row in zip(members, rows, strict=True):
        label = f"seed {member.seed}: " if len(members) > 1 else ""
        print(f"final: {label}env_steps={row.get('env_steps')} return={row.get('ep_return', float('nan')):.2f} "
              f"cost={row.get('ep_cost', float('nan')):.2f} (limit {member.cost_limit:g}) "
              f"fps={row.get('total_fps', float('nan')):.0f}")
        print(label + training_story(member))
    return 0


def check_resume_only(args, *names) -> None:
    for name in names:
        if getattr(args, name) and not args.resume:
            raise SafeRLError(f"--{name.replace('_', '-')} goes with --resume")


def training_story(member) -> str:
    """The one-line account of the constraint over a member's whole run (see report.stats.constraint_story)."""
    from saferl.logger import read_progress
    from saferl.report.stats import constraint_story

    rows = read_progress(member.run_dir / "progress.csv", notes=[])
    columns = [[float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]
               for key in ("env_steps", "ep_return", "ep_cost")]
    return constraint_story(*columns, member.cost_limit)


def cmd_eval(args) -> int:
    from saferl.rollout import evaluate

    if args.episodes < 1:
        raise SafeRLError(f"--episodes must be >= 1, got {args.episodes}")
    summary = evaluate(Path(args.run_dir), args.episodes, args.deterministic, args.seed)
    print(f"{summary['env_id']} {summary['algo']}: return {summary['mean_return']:.2f} +- "
          f"{summary['std_return']:.2f}, cost {summary['mean_cost']:.2f} +- {summary['std_cost']:.2f} "
          f"over {args.episodes} episodes -> {Path(args.run_dir) / 'eval.json'}")
    return 0


def check_env_id(env_id: str) -> None:
    """Fail in one line before any long work starts on an id that does not exist."""
    from saferl import envs

    try:
        envs.make(env_id, num_envs=1).close()
    except ValueError as exc:
        raise SafeRLError(str(exc)) from None


def cmd_bench(args) -> int:
    from saferl.bench import run_bench

    check_env_id(args.env)
    for name in ("steps", "constrained_steps", "num_envs", "repeats"):
        if getattr(args, name) < 1:
            raise SafeRLError(f"--{name.replace('_', '-')} must be >= 1")
    out = Path(args.out) if args.out else Path("bench-results") / f"{args.env}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    check_json_out(out)
    run_bench(args.env, args.steps, args.num_envs, args.constrained_steps, not args.no_sb3, out,
              repeats=args.repeats)
    return 0


def cmd_report(args) -> int:
    from saferl.report import build_report

    result = build_report(args.run_dirs, args.out, args.eval_episodes, args.video, args.deterministic)
    print(f"report: {result['html']} (also {result['md'].name}, {result['json'].name})")
    return 0


def flag_overrides(args) -> dict:
    """The config layer the run flags stand for (`--env`, `--num-envs`, `--steps`, `--seed`, when given)."""
    extra: dict = {}
    if getattr(args, "env", None):
        extra.setdefault("env", {})["id"] = args.env
    if args.num_envs:
        extra.setdefault("env", {})["num_envs"] = args.num_envs
    if args.steps:
        extra.setdefault("train", {})["total_steps"] = args.steps
    if args.seed is not None:
        extra.setdefault("train", {})["seed"] = args.seed
    return extra


NOTHING_TO_TRAIN = ("note: nothing to train: the run already has {steps} steps (per member); pass a larger --steps "
                    "with --resume to continue it")
MIN_ROLLOUT = 64  # steps per env per rollout below which GAE sees too little of an episode to be useful


def training_notes(config, steps_flag: int | None, episode_limit: int | None) -> list[str]:
    """What the run will really do where it differs from what was asked, or can hardly learn: one line each."""
    per_epoch, num_envs, total = config.train.steps_per_epoch, config.env.num_envs, config.train.total_steps
    epochs = max(1, math.ceil(total / per_epoch))  # the runner trains whole epochs
    rollout = per_epoch // num_envs
    notes = []
    if epochs * per_epoch != total:
        asked = f"--steps {total}" if steps_flag else f"train.total_steps={total}"
        notes.append(f"note: {asked} rounds up to {epochs} epoch{'s' * (epochs != 1)} of {per_epoch} steps "
                     f"({epochs * per_epoch} steps; train.steps_per_epoch sets the epoch size)")
    if rollout < MIN_ROLLOUT:
        notes.append(f"warning: rollouts of {rollout} steps per env (train.steps_per_epoch {per_epoch} over "
                     f"{num_envs} envs) are too short for useful advantages; use fewer envs or longer epochs")
    if episode_limit and epochs * rollout < episode_limit:
        notes.append(f"warning: each env runs {epochs * rollout} steps in the whole run but episodes last up to "
                     f"{episode_limit}: an episode that runs to its time limit never ends, so none is logged")
    return notes


def print_training_notes(config, steps_flag: int | None, runner) -> None:
    for line in training_notes(config, steps_flag, getattr(runner.env, "max_episode_steps", None)):
        print(line, flush=True)


def check_seed(args) -> None:
    """Every command's --seed: numpy's legacy seeding fails outside [0, 2**32), and the runner adds offsets."""
    from saferl.config import MAX_SEED

    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise SafeRLError(f"--seed must be in [0, {MAX_SEED}], got {seed}")


def check_finite(args, *names, minimum: float = 0.0) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise SafeRLError(f"--{name.replace('_', '-')} must be a finite number >= {minimum:g}, got {value}")


def check_json_out(out: Path) -> None:
    """A benchmark's --out may replace an earlier result (a .json file), never a checkpoint, dataset or folder."""
    if out.is_dir() or (out.exists() and out.suffix != ".json"):
        raise SafeRLError(f"--out {out} exists and is not a JSON result file; give a new .json path")


def check_positive(args, *names) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SafeRLError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def cmd_collect(args) -> int:
    from saferl.offline.dataset import check_dataset_out, collect_demonstrations

    if args.deterministic and args.noise is not None:
        raise SafeRLError("--deterministic and --noise exclude each other (--noise already uses the mean action)")
    if (args.run_dir is None) == (args.scripted is None):
        raise SafeRLError("give a run directory or --scripted ENV_ID (one of them)")
    check_scripted_only(args)
    if args.scripted:
        return collect_scripted_cli(args)
    check_dataset_out(Path(args.out), Path(args.run_dir), overwrite=args.force)
    summary = collect_demonstrations(Path(args.run_dir), args.episodes, Path(args.out), args.noise,
                                     args.deterministic, args.seed)
    print(f"{summary['episodes']} episodes ({summary['steps']} steps): return {summary['mean_return']:.2f}, "
          f"cost {summary['mean_cost']:.2f} (limit {summary['cost_limit']:g}) -> {summary['out']}")
    return 0


def check_scripted_only(args) -> None:
    """--unsafe-fraction mixes in the scripted controller's unsafe variant; a policy has no such variant."""
    if args.unsafe_fraction is not None and not args.scripted:
        raise SafeRLError("--unsafe-fraction goes with --scripted (a run's policy has no unsafe variant to mix in; "
                          "use --noise to make its demonstrations imperfect)")


def collect_scripted_cli(args) -> int:
    from saferl.offline.dataset import check_dataset_out
    from saferl.offline.scripted import collect_scripted

    check_dataset_out(Path(args.out), None, overwrite=args.force)
    summary = collect_scripted(args.scripted, args.episodes, Path(args.out), args.noise or 0.0,
                               args.unsafe_fraction or 0.0,
                               args.seed or 0)
    print(f"{summary['episodes']} scripted episodes ({summary['steps']} steps, {summary['unsafe_episodes']} unsafe): "
          f"success {summary['success_rate']:.0%}, return {summary['mean_return']:.2f}, cost "
          f"{summary['mean_cost']:.2f} -> {summary['out']}")
    return 0


def cmd_bc(args) -> int:
    from saferl.config import build_config
    from saferl.launch import default_run_dir
    from saferl.offline.dataset import dataset_env_id, train_bc

    check_positive(args, "epochs")
    env_id = args.env or dataset_env_id(Path(args.dataset))
    if not env_id:
        raise SafeRLError(f"--env is needed: {args.dataset} does not name its env")
    extra: dict = {"env": {"id": env_id}, "bc": {"dataset": str(args.dataset)}}
    if args.filter is not None:
        extra["bc"]["filter"] = args.filter
    if args.epochs is not None:
        extra["bc"]["epochs"] = args.epochs
    if args.cost_limit is not None:
        extra["env"]["cost_limit"] = args.cost_limit
    if args.seed is not None:
        extra["train"] = {"seed": args.seed}
    config = build_config("bc", args.config, args.set, extra)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(config, [config.train.seed])
    summary = train_bc(config, run_dir)
    print(f"run directory: {run_dir}")
    line = (f"bc: {summary['episodes_kept']}/{summary['episodes_total']} episodes ({summary['filter']}), "
            f"{summary['epochs_run']} epochs (best {summary['best_epoch']}), val action MSE "
            f"{summary['best_val_loss']:.3g}")
    if "eval_return" in summary:
        line += (f"; clone: return {summary['eval_return']:.2f}, cost {summary['eval_cost']:.2f} "
                 f"(limit {config.env.cost_limit:g})")
    print(line)
    return 0


def cmd_finetune(args) -> int:
    from saferl.launch import check_resume_flags, default_run_dir, resumed_members
    from saferl.offline.finetune import build_finetune_config, check_same_clone, load_bc_run
    from saferl.ownership import claim
    from saferl.recovery import restart_unreadable

    check_positive(args, "steps", "num_envs")
    check_resume_only(args, "restart_unreadable")
    bc_config, _, _ = load_bc_run(Path(args.bc_run_dir))
    if args.resume:
        if not args.run_dir:
            raise SafeRLError("--resume needs --run-dir")
        members = resumed_members(Path(args.run_dir), args.algo, args.steps)
        for note in check_resume_flags(members, None, args.num_envs, args.seed, None, args.config, args.set):
            print(note)
        check_same_clone(members[0].run_dir, Path(args.bc_run_dir))
        run_dir, config = members[0].run_dir, members[0].config
    else:
        config = build_finetune_config(bc_config, args.algo, args.config, args.set, flag_overrides(args))
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(config, [config.train.seed], "finetune-")
    with claim(run_dir):
        if args.resume:
            restart_unreadable(members, args.restart_unreadable)
        return finetune_members(args, config, run_dir)


def finetune_members(args, config, run_dir: Path) -> int:
    """Fine-tune in a claimed run directory; the summary line, or the way to resume after Ctrl-C."""
    from saferl.offline.finetune import finetune_runner

    runner = finetune_runner(config, run_dir, Path(args.bc_run_dir), resume=args.resume)
    print(f"run directory: {run_dir}", flush=True)
    print_training_notes(config, args.steps, runner)
    try:
        row = runner.train()[0]
    except KeyboardInterrupt:
        print(f"\ninterrupted at epoch {runner.epoch}; continue with: saferl finetune {args.bc_run_dir} "
              f"--algo {args.algo} --run-dir {run_dir} --resume", file=sys.stderr)
        return 130
    if not row:
        print(NOTHING_TO_TRAIN.format(steps=runner.env_steps))
        return 0
    print(f"final: env_steps={row.get('env_steps')} return={row.get('ep_return', float('nan')):.2f} "
          f"cost={row.get('ep_cost', float('nan')):.2f} (limit {config.env.cost_limit:g})")
    return 0


def cmd_bench_offline(args) -> int:
    from saferl.offline.bench import run_bench_offline

    check_env_id(args.env)
    check_positive(args, "expert_steps", "episodes", "bc_epochs", "steps", "num_envs")
    check_finite(args, "noise", "cost_limit")
    check_scripted_only(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work_dir = Path(args.work_dir) if args.work_dir else Path("bench-results") / f"offline-{args.env}-{stamp}"
    out = Path(args.out) if args.out else work_dir / "bench-offline.json"
    check_json_out(out)
    run_bench_offline(args.env, out, work_dir, Path(args.expert) if args.expert else None, args.expert_steps,
                      args.episodes, args.noise, args.filter, args.bc_epochs, args.steps, args.num_envs, args.seed,
                      args.cost_limit, args.set, args.scripted, args.unsafe_fraction or 0.0)
    return 0


def cmd_benchmark(args) -> int:
    from saferl.benchmark import run_benchmark

    check_positive(args, "max_parallel", "cpus_per_cell")
    return run_benchmark(Path(args.grid), Path(args.out), args.address, args.max_parallel, args.cpus_per_cell)


def cmd_export(args) -> int:
    from saferl.export import export_policy

    result = export_policy(Path(args.run_dir), args.format, Path(args.out), force=args.force)
    print(f"{result['format']}: {result['out']} ({result['bytes']} bytes; inputs {', '.join(result['inputs'])})")
    return 0


def check_mujoco_gl() -> None:
    """MuJoCo refuses a MUJOCO_GL it does not know when it is imported, which every command does (even on the toy
    task, even when nothing renders): say so in one line."""
    if "MUJOCO_GL" not in os.environ:
        return
    try:
        import mujoco  # noqa: F401
    except RuntimeError as exc:
        if "MUJOCO_GL" not in str(exc):
            raise
        raise SafeRLError(f"{exc}; MuJoCo accepts egl, osmesa or glfw (or disable); unset it when nothing "
                          "renders") from None


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "bench": cmd_bench, "report": cmd_report,
            "collect": cmd_collect, "bc": cmd_bc, "finetune": cmd_finetune, "bench-offline": cmd_bench_offline,
            "benchmark": cmd_benchmark, "export": cmd_export}


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_mujoco_gl()
        check_seed(args)
        return COMMANDS[args.command](args)
    except SafeRLError as exc:
        if os.environ.get("SAFERL_DEBUG") and exc.__cause__ is not None:  # e.g. what a user env raised
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"saferl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable run directory, disk full, a file where a folder should be...
        print(f"saferl: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
