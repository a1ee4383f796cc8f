"""`saferl` command line: train, eval, the offline path (collect, bc, finetune), benchmarks and reports.

Every user error ends as one line on stderr and exit status 2; a Ctrl-C during training keeps the last
checkpoint (written every epoch, atomically) so `--resume` continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
import time
import traceback
from pathlib import Path

from saferl.errors import SafeRLError, os_error_text


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other saferl error (exit status 2 as before)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_args(argv):
    parser = OneLineParser(prog="saferl", description="Safe reinforcement learning for robot control.")
    sub = parser.add_subparsers(dest="command", required=True)

    config_flags = argparse.ArgumentParser(add_help=False)  # train, finetune, bc: a run directory from a config
    config_flags.add_argument("--seed", type=int)
    config_flags.add_argument("--config", dest="config_file", metavar="FILE", help="YAML file with overrides")
    config_flags.add_argument("--set", dest="sets", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                              help="config overrides, e.g. ppo.clip_ratio=0.1 (train: env.cost_limit=10,25,50 "
                              "trains one member per limit)")
    config_flags.add_argument("--run-dir", help="default: runs/<env>/<algo>-seed<seed>-<time>")
    run_flags = argparse.ArgumentParser(add_help=False, parents=[config_flags])  # train, finetune: resumable RL
    run_flags.add_argument("--steps", type=int, help="total environment steps (a fine-tune's warm-up included)")
    run_flags.add_argument("--num-envs", type=int)
    run_flags.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    run_flags.add_argument("--restart-unreadable", action="store_true",
                           help="with --resume: a member whose checkpoints are all unreadable retrains from epoch 0 "
                           "(the others keep theirs); without it, that is an error")

    train = sub.add_parser("train", parents=[run_flags], help="train a policy; writes a run directory")
    train.add_argument("--algo", help="ppo, ppo_lag, ... (with --resume: the run's own, when left out)")
    train.add_argument("--env", help="task id, e.g. SafetyHalfCheetahVelocity-v1")
    train.add_argument("--seeds", help="several seeds trained together in one process, e.g. 0,1,2: one run "
                       "directory per seed under --run-dir")
    train.add_argument("--replan-schedule", action="store_true",
                       help="with --resume --steps beyond the run's plan: re-plan the learning-rate schedule")

    evaluate = sub.add_parser("eval", help="evaluate a run's policy; writes eval.json")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--deterministic", action="store_true")
    evaluate.add_argument("--seed", type=int)

    bench_flags = argparse.ArgumentParser(add_help=False)  # throughput, offline-pipeline
    bench_flags.add_argument("--env", default="SafetyHalfCheetahVelocity-v1")
    bench_flags.add_argument("--num-envs", type=int, default=16)
    bench = sub.add_parser("throughput", aliases=["bench"], parents=[bench_flags],
                           help="measure throughput on this machine (a benchmark, not a test; was `bench`)")
    bench.add_argument("--steps", type=int, default=100_000, help="steps for the PPO/SB3 comparison")
    bench.add_argument("--constrained-steps", type=int, default=40_000, help="steps for PPO-Lag and CPO")
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

    bc = sub.add_parser("bc", parents=[config_flags], help="behaviour cloning from a dataset; writes a run directory")
    bc.add_argument("--dataset", required=True, help="HDF5 file (ours or DSRL/OSRL layout)")
    bc.add_argument("--env", help="task id (default: the one the dataset names)")
    bc.add_argument("--filter", help="all (default) or safe: only episodes with cost <= the cost limit")
    bc.add_argument("--cost-limit", type=float, help="budget for --filter safe (and for a later fine-tune)")
    bc.add_argument("--epochs", type=int)

    finetune = sub.add_parser("finetune", parents=[run_flags],
                              help="safe RL starting from a BC run; writes a run directory")
    finetune.add_argument("bc_run_dir")
    finetune.add_argument("--algo", required=True, help="ppo, ppo_lag or cpo")

    offline = sub.add_parser("offline-pipeline", aliases=["bench-offline"], parents=[bench_flags],
                             help="expert -> demos -> BC -> fine-tune vs scratch (a benchmark; was `bench-offline`)")
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
    offline.add_argument("--seed", type=int, default=0)
    offline.add_argument("--cost-limit", type=float)
    offline.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                         help="for expert, fine-tune, scratch")
    offline.add_argument("--work-dir", help="where the runs go (default bench-results/offline-<env>-<time>/)")
    offline.add_argument("--out", help="JSON file (default <work-dir>/offline-pipeline.json)")

    grid = sub.add_parser("benchmark", help="train a grid of algorithms x tasks x seeds on Ray: results.json, "
                          "results.md, report.html (run again to skip finished cells and resume the others)")
    grid.add_argument("grid", help="YAML file: algos, envs, seeds, steps, optional set (list of key=value)")
    grid.add_argument("--out", required=True, help="output folder; cells go to <out>/<env>/<algo>/")
    grid.add_argument("--address", help="an existing Ray cluster (default: start a local Ray)")
    grid.add_argument("--max-parallel", type=int, help="cells in flight at once (default: CPUs // --cpus-per-cell)")
    grid.add_argument("--cpus-per-cell", type=int, default=2, help="CPUs Ray reserves per cell (default 2)")
    grid.add_argument("--status", action="store_true", help="train nothing: write status.{json,md} and figures with "
                      "the finished cells and every started one at the steps it has reached (safe while it trains)")

    export = sub.add_parser("export", help="a run's deterministic policy as one ONNX or TorchScript file for a "
                            "robot (normaliser and action clipping inside; see docs/deploy.md)")
    export.add_argument("run_dir")
    export.add_argument("--format", required=True, help="onnx or torchscript")
    export.add_argument("--out", required=True, help="file to write, e.g. policy.onnx")
    export.add_argument("--force", action="store_true", help="overwrite an existing --out")
    return parser.parse_args(argv)


def cmd_train(args) -> int:
    from saferl import training
    from saferl.members import parse_int_list

    training.check_algo(args.algo, required=not args.resume)
    check_positive(args, "steps", "num_envs")
    args.seeds = parse_int_list(args.seeds, "--seeds") if args.seeds is not None else None
    request = request_from(args, training.TrainRequest)
    return train_and_print(training.train, request, training.train_summary, "resume with: saferl train")


def request_from(args, request_type):
    """A `saferl.training` request from the flags of the same names."""
    return request_type(**{field.name: getattr(args, field.name) for field in dataclasses.fields(request_type)})


def train_and_print(job, request, summary, how: str) -> int:
    """Run a training job and print its closing lines; after a Ctrl-C, how to continue it (exit status 130)."""
    from saferl.training import Interrupted

    try:
        trained = job(request, say=functools.partial(print, flush=True))  # announced at once: runs take hours
    except Interrupted as stop:
        print(f"\ninterrupted at epoch {stop.epoch}; {how} --algo {stop.algo} --run-dir {stop.run_dir} --resume",
              file=sys.stderr)
        return 130
    for line in summary(trained):
        print(line)
    return 0


def cmd_eval(args) -> int:
    from saferl.evaluation import evaluate

    check_positive(args, "episodes")
    summary = evaluate(Path(args.run_dir), args.episodes, args.deterministic, args.seed)
    print(f"{summary['env_id']} {summary['algo']}: return {summary['mean_return']:.2f} +- "
          f"{summary['std_return']:.2f}, cost {summary['mean_cost']:.2f} +- {summary['std_cost']:.2f} "
          f"over {args.episodes} episodes -> {Path(args.run_dir) / 'eval.json'}")
    return 0


def cmd_throughput(args) -> int:
    from saferl.envs import require_env
    from saferl.throughput import run_throughput

    require_env(args.env)
    check_positive(args, "steps", "constrained_steps", "num_envs", "repeats")
    out = json_out(args.out, Path("bench-results") / f"{args.env}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    run_throughput(args.env, args.steps, args.num_envs, args.constrained_steps, not args.no_sb3, out,
                   repeats=args.repeats)
    return 0


def cmd_report(args) -> int:
    from saferl.report import build_report

    result = build_report(args.run_dirs, args.out, args.eval_episodes, args.video, args.deterministic)
    print(f"report: {result['html']} (also {result['md'].name}, {result['json'].name})")
    return 0


def check_finite(args, *names, minimum: float = 0.0) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise SafeRLError(f"--{name.replace('_', '-')} must be a finite number >= {minimum:g}, got {value}")


def json_out(flag: str | None, default: Path) -> Path:
    """A benchmark's --out (else `default`): it may replace an earlier result (a .json file), never a checkpoint,
    dataset or folder."""
    out = Path(flag) if flag else default
    if out.is_dir() or (out.exists() and out.suffix != ".json"):
        raise SafeRLError(f"--out {out} exists and is not a JSON result file; give a new .json path")
    return out


def check_positive(args, *names) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SafeRLError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def cmd_collect(args) -> int:
    from saferl.offline.collect import check_dataset_out, collect_demonstrations
    from saferl.offline.scripted import collect_scripted

    if args.deterministic and args.noise is not None:
        raise SafeRLError("--deterministic and --noise exclude each other (--noise already uses the mean action)")
    if (args.run_dir is None) == (args.scripted is None):
        raise SafeRLError("give a run directory or --scripted ENV_ID (one of them)")
    check_scripted_only(args)
    check_dataset_out(Path(args.out), Path(args.run_dir) if args.run_dir else None, overwrite=args.force)
    if args.scripted:
        summary = collect_scripted(args.scripted, args.episodes, Path(args.out), args.noise or 0.0,
                                   args.unsafe_fraction or 0.0, args.seed or 0)
        print(f"{summary['episodes']} scripted episodes ({summary['steps']} steps, {summary['unsafe_episodes']} "
              f"unsafe): success {summary['success_rate']:.0%}, return {summary['mean_return']:.2f}, cost "
              f"{summary['mean_cost']:.2f} -> {summary['out']}")
        return 0
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


def cmd_bc(args) -> int:
    from saferl import training

    check_positive(args, "epochs")
    cloned = training.behaviour_clone(request_from(args, training.CloneRequest))
    for line in training.clone_summary(cloned):
        print(line)
    return 0


def cmd_finetune(args) -> int:
    from saferl import training

    check_positive(args, "steps", "num_envs")
    request = request_from(args, training.FinetuneRequest)
    return train_and_print(training.finetune, request, training.finetune_summary,
                           f"continue with: saferl finetune {args.bc_run_dir}")


def cmd_offline_pipeline(args) -> int:
    from saferl.envs import require_env
    from saferl.offline.pipeline import run_offline_pipeline

    require_env(args.env)
    check_positive(args, "expert_steps", "episodes", "bc_epochs", "steps", "num_envs")
    check_finite(args, "noise", "cost_limit")
    check_scripted_only(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work_dir = Path(args.work_dir) if args.work_dir else Path("bench-results") / f"offline-{args.env}-{stamp}"
    out = json_out(args.out, work_dir / f"{args.command}.json")  # the old verb keeps its old file name
    run_offline_pipeline(args.env, out, work_dir, Path(args.expert) if args.expert else None, args.expert_steps,
                         args.episodes, args.noise, args.filter, args.bc_epochs, args.steps, args.num_envs, args.seed,
                         args.cost_limit, args.set, args.scripted, args.unsafe_fraction or 0.0)
    return 0


def cmd_benchmark(args) -> int:
    from saferl.benchmark import benchmark_status, run_benchmark

    if args.status:
        return benchmark_status(Path(args.grid), Path(args.out))
    check_positive(args, "max_parallel", "cpus_per_cell")
    return run_benchmark(Path(args.grid), Path(args.out), args.address, args.max_parallel, args.cpus_per_cell)


def cmd_export(args) -> int:
    from saferl.export import export_policy

    result = export_policy(Path(args.run_dir), args.format, Path(args.out), force=args.force)
    print(f"{result['format']}: {result['out']} ({result['bytes']} bytes; inputs {', '.join(result['inputs'])})")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "throughput": cmd_throughput, "report": cmd_report,
            "collect": cmd_collect, "bc": cmd_bc, "finetune": cmd_finetune, "offline-pipeline": cmd_offline_pipeline,
            "benchmark": cmd_benchmark, "export": cmd_export}
RENAMED = {"bench": "throughput", "bench-offline": "offline-pipeline"}  # round 3; the old names go in the next release


def main(argv=None) -> int:
    from saferl.config import check_seed

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if "MUJOCO_GL" in os.environ:  # MuJoCo refuses a value it does not know at import (which every command does)
            import mujoco  # noqa: F401
        if getattr(args, "seed", None) is not None:  # every command's --seed, before any work starts
            check_seed(args.seed, "--seed")
        if args.command in RENAMED:
            print(f"saferl: note: `saferl {args.command}` is now `saferl {RENAMED[args.command]}`; the old name "
                  "still works in this release", file=sys.stderr)
        return COMMANDS[RENAMED.get(args.command, args.command)](args)
    except SafeRLError as exc:
        if os.environ.get("SAFERL_DEBUG") and exc.__cause__ is not None:  # e.g. what a user env raised
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"saferl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable run directory, disk full, a file where a folder should be...
        print(f"saferl: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if "MUJOCO_GL" not in str(exc):
            raise
        print(f"saferl: error: {exc}; MuJoCo accepts egl, osmesa or glfw (or disable); unset it when nothing "
              "renders", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
