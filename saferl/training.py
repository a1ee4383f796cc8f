"""Training as a library call: `train(TrainRequest(...))`, `finetune(FinetuneRequest(...))` and
`behaviour_clone(CloneRequest(...))`, from a request to the run's final rows.

`saferl train`, `saferl finetune`, `saferl bc` and `saferl benchmark` all come here. The lines a run announces
before it trains go to a `say` callable (the CLI's `print`, a benchmark cell's log); the closing lines are
`train_summary` / `finetune_summary`; a problem arrives as `SafeRLError`, and a Ctrl-C as `Interrupted`, which
names the epoch the run resumes from (its checkpoint is kept).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from saferl.config import Config, build_config, epochs_per_run
from saferl.errors import SafeRLError
from saferl.launch import (
    check_resume_flags,
    default_run_dir,
    new_members,
    resumed_members,
    split_cost_limits,
    start_members,
)
from saferl.members import Member

Say = Callable[[str], None]  # where a run's announcements go, one line each


@dataclass(kw_only=True)
class RunRequest:
    """What `saferl train` and `saferl finetune` share: the run flags (None: the config's value)."""

    algo: str | None = None
    steps: int | None = None  # total env steps per member
    seed: int | None = None
    num_envs: int | None = None
    config_file: str | None = None
    sets: list[str] = field(default_factory=list)  # --set key=value
    run_dir: str | Path | None = None  # default: runs/<env>/<algo>-seed<seed>-<time>
    resume: bool = False  # continue the run in run_dir
    restart_unreadable: bool = False  # with resume: retrain the members whose checkpoints are all unreadable


@dataclass(kw_only=True)
class TrainRequest(RunRequest):
    env: str | None = None
    seeds: list[int] | None = None  # several members in one process, one run directory each
    replan_schedule: bool = False  # with resume beyond the run's plan: re-plan the learning-rate schedule


@dataclass(kw_only=True)
class FinetuneRequest(RunRequest):
    bc_run_dir: str | Path


@dataclass
class Trained:
    """A finished `train` or `finetune`: each member's last progress row ({} when nothing was left to train)."""

    run_dir: Path
    members: list[Member]
    rows: list[dict]
    env_steps: int  # per member, where training stopped


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: the checkpoint of `epoch` is kept, and resuming `run_dir` continues from it."""

    def __init__(self, epoch: int, run_dir: Path, algo: str):
        super().__init__(f"interrupted at epoch {epoch}")
        self.epoch, self.run_dir, self.algo = epoch, run_dir, algo


def check_algo(algo: str | None, where: str = "", required: bool = True) -> None:
    """An algorithm name the library knows (a close match is suggested); None passes only when not `required`."""
    from saferl.algorithms import ALGORITHMS

    if algo is None and required:
        raise SafeRLError(f"--algo is required; choose from {', '.join(ALGORITHMS)}")
    if algo is not None and algo not in ALGORITHMS:
        close = difflib.get_close_matches(algo, ALGORITHMS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SafeRLError(f"{where}unknown algorithm '{algo}'{hint}; choose from {', '.join(ALGORITHMS)}")


def train(request: TrainRequest, say: Say = print) -> Trained:
    """Train a new run (one member, or one per seed / cost limit) or resume one, in a claimed run directory."""
    from saferl.ownership import claim
    from saferl.recovery import restart_unreadable
    from saferl.runner import Runner

    if request.seeds is not None and request.seed is not None:
        raise SafeRLError("give --seed or --seeds, not both")
    check_resume_only(request, "replan_schedule", "restart_unreadable")
    if request.resume:
        members = resumed_members(Path(request.run_dir), request.algo, request.steps)
        for note in check_resume_flags(members, request.env, request.num_envs, request.seed, request.seeds,
                                       request.config_file, request.sets, request.replan_schedule):
            say(note)
        if request.steps:
            say(f"note: --resume with --steps {request.steps}: the run now trains to {request.steps} steps per member")
    else:
        check_algo(request.algo)
        sets, cost_limits = split_cost_limits(request.sets)
        config = build_config(request.algo, request.config_file, sets, flag_overrides(request, request.env))
        members = new_members(config, request.seeds, cost_limits, Path(request.run_dir) if request.run_dir else None)
    run_dir = members[0].run_dir if len(members) == 1 else members[0].run_dir.parent
    with claim(run_dir, *(m.run_dir for m in members)):
        if request.resume:
            restart_unreadable(members, request.restart_unreadable)
        else:
            start_members(members)
        runner = Runner(members, resume=request.resume)
        say(f"run directory: {run_dir}" + (f" ({len(members)} members)" if len(members) > 1 else ""))
        return run_to_end(runner, run_dir, request, say)


def finetune(request: FinetuneRequest, say: Say = print) -> Trained:
    """Fine-tune a BC clone with safe RL (saferl/offline/finetune.py), or resume such a fine-tune."""
    from saferl.offline.finetune import build_finetune_config, check_same_clone, finetune_runner, load_bc_run
    from saferl.ownership import claim
    from saferl.recovery import restart_unreadable

    check_resume_only(request, "restart_unreadable")
    bc_run_dir = Path(request.bc_run_dir)
    bc_config, _, _ = load_bc_run(bc_run_dir)
    if request.resume:
        members = resumed_members(Path(request.run_dir), request.algo, request.steps)
        for note in check_resume_flags(members, None, request.num_envs, request.seed, None, request.config_file,
                                       request.sets):
            say(note)
        check_same_clone(members[0].run_dir, bc_run_dir)
        run_dir, config = members[0].run_dir, members[0].config
    else:
        config = build_finetune_config(bc_config, request.algo, request.config_file, request.sets,
                                       flag_overrides(request))
        run_dir = Path(request.run_dir) if request.run_dir else default_run_dir(config, [config.train.seed],
                                                                                "finetune-")
    with claim(run_dir):
        if request.resume:
            restart_unreadable(members, request.restart_unreadable)
        runner = finetune_runner(config, run_dir, bc_run_dir, resume=request.resume)
        say(f"run directory: {run_dir}")
        return run_to_end(runner, run_dir, request, say)


@dataclass(kw_only=True)
class CloneRequest:
    """`saferl bc`: behaviour cloning of a dataset's actions (None: the config's value, or the dataset's env)."""

    dataset: str | Path
    env: str | None = None
    filter: str | None = None  # "all" or "safe"
    cost_limit: float | None = None
    epochs: int | None = None
    seed: int | None = None
    config_file: str | None = None
    sets: list[str] = field(default_factory=list)
    run_dir: str | Path | None = None  # default: runs/<env>/bc-seed<seed>-<time>


@dataclass
class Cloned:
    config: Config
    run_dir: Path
    summary: dict  # saferl.offline.dataset.train_bc's


def behaviour_clone(request: CloneRequest) -> Cloned:
    """Train a BC run directory from a dataset (saferl/offline/dataset.py)."""
    from saferl.offline.bc import train_bc
    from saferl.offline.dataset import dataset_env_id

    env_id = request.env or dataset_env_id(Path(request.dataset))
    if not env_id:
        raise SafeRLError(f"--env is needed: {request.dataset} does not name its env")
    extra: dict = {"env": {"id": env_id}, "bc": {"dataset": str(request.dataset)}}
    if request.filter is not None:
        extra["bc"]["filter"] = request.filter
    if request.epochs is not None:
        extra["bc"]["epochs"] = request.epochs
    if request.cost_limit is not None:
        extra["env"]["cost_limit"] = request.cost_limit
    if request.seed is not None:
        extra["train"] = {"seed": request.seed}
    config = build_config("bc", request.config_file, request.sets, extra)
    run_dir = Path(request.run_dir) if request.run_dir else default_run_dir(config, [config.train.seed])
    return Cloned(config, run_dir, train_bc(config, run_dir))


def check_resume_only(request: RunRequest, *names: str) -> None:
    """Flags that only mean something for a resumed run; and a resume needs the run's directory."""
    for name in names:
        if getattr(request, name) and not request.resume:
            raise SafeRLError(f"--{name.replace('_', '-')} goes with --resume")
    if request.resume and not request.run_dir:
        raise SafeRLError("--resume needs --run-dir")


def run_to_end(runner, run_dir: Path, request: RunRequest, say: Say) -> Trained:
    """The notes on what the run will really do, then its epochs; a Ctrl-C becomes `Interrupted`."""
    for line in training_notes(runner.members[0].config, request.steps, getattr(runner.env, "max_episode_steps", None)):
        say(line)
    try:
        rows = runner.train()
    except KeyboardInterrupt:
        raise Interrupted(runner.epoch, run_dir, runner.members[0].config.train.algo) from None
    return Trained(run_dir, runner.members, rows, runner.env_steps)


def flag_overrides(request: RunRequest, env: str | None = None) -> dict:
    """The config layer the run flags stand for (env, num_envs, steps, seed, when given)."""
    extra: dict = {}
    if env:
        extra.setdefault("env", {})["id"] = env
    if request.num_envs:
        extra.setdefault("env", {})["num_envs"] = request.num_envs
    if request.steps:
        extra.setdefault("train", {})["total_steps"] = request.steps
    if request.seed is not None:
        extra.setdefault("train", {})["seed"] = request.seed
    return extra


NOTHING_TO_TRAIN = ("note: nothing to train: the run already has {steps} steps (per member); pass a larger --steps "
                    "with --resume to continue it")
MIN_ROLLOUT = 64  # steps per env per rollout below which GAE sees too little of an episode to be useful


def training_notes(config: Config, steps_flag: int | None, episode_limit: int | None) -> list[str]:
    """What the run will really do where it differs from what was asked, or can hardly learn: one line each."""
    per_epoch, num_envs, total = config.train.steps_per_epoch, config.env.num_envs, config.train.total_steps
    epochs = epochs_per_run(total, per_epoch)  # the runner trains whole epochs
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


def train_summary(trained: Trained) -> list[str]:
    """The lines `saferl train` ends with: each member's final numbers and the story of its constraint."""
    lines = [f"run directory: {trained.run_dir}"]
    if not trained.rows[0]:
        return lines + [NOTHING_TO_TRAIN.format(steps=trained.env_steps)]
    for member, row in zip(trained.members, trained.rows, strict=True):
        label = f"seed {member.seed}: " if len(trained.members) > 1 else ""
        lines.append(f"final: {label}{final_numbers(row, member.cost_limit)} "
                     f"fps={row.get('total_fps', math.nan):.0f}")
        lines.append(label + training_story(member))
    return lines


def finetune_summary(trained: Trained) -> list[str]:
    """The line `saferl finetune` ends with."""
    row = trained.rows[0]
    if not row:
        return [NOTHING_TO_TRAIN.format(steps=trained.env_steps)]
    return [f"final: {final_numbers(row, trained.members[0].cost_limit)}"]


def clone_summary(cloned: Cloned) -> list[str]:
    """The lines `saferl bc` ends with."""
    summary = cloned.summary
    line = (f"bc: {summary['episodes_kept']}/{summary['episodes_total']} episodes ({summary['filter']}), "
            f"{summary['epochs_run']} epochs (best {summary['best_epoch']}), val action MSE "
            f"{summary['best_val_loss']:.3g}")
    if "eval_return" in summary:
        line += (f"; clone: return {summary['eval_return']:.2f}, cost {summary['eval_cost']:.2f} "
                 f"(limit {cloned.config.env.cost_limit:g})")
    return [f"run directory: {cloned.run_dir}", line]


def final_numbers(row: dict, cost_limit: float) -> str:
    return (f"env_steps={row.get('env_steps')} return={row.get('ep_return', math.nan):.2f} "
            f"cost={row.get('ep_cost', math.nan):.2f} (limit {cost_limit:g})")


def training_story(member: Member) -> str:
    """The one-line account of the constraint over a member's whole run (see report.stats.constraint_story)."""
    from saferl.logger import progress_number, read_progress
    from saferl.report.stats import constraint_story

    rows = read_progress(member.run_dir / "progress.csv", notes=[])
    columns = [[progress_number(row.get(key)) for row in rows] for key in ("env_steps", "ep_return", "ep_cost")]
    return constraint_story(*columns, member.cost_limit)
