"""From command-line choices to the members a `Runner` trains: new runs, multi-seed runs and resumed runs.

Kept apart from the CLI so `saferl train`, `saferl finetune` and `saferl benchmark` (through saferl/training.py)
share one way of laying out run directories and of deciding what a resumed run may change.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

from saferl.config import Config, config_from_dict, load_yaml, merge, parse_set
from saferl.errors import SafeRLError
from saferl.members import (
    MEMBERS_FILE,
    Member,
    member_dir_name,
    plan_members,
    read_members_file,
    read_plan_config,
    write_members_file,
)

COST_LIMIT_KEYS = ("env.cost_limit", "lagrange.cost_limit")


def split_cost_limits(sets: list[str]) -> tuple[list[str], list[float] | None]:
    """Take a per-member `--set env.cost_limit=10,25,50` out of `sets`: (the other sets, [10, 25, 50])."""
    rest, limits = [], None
    for item in sets or []:
        key, _, value = item.partition("=")
        if key.strip() in COST_LIMIT_KEYS and "," in value:
            try:
                limits = [float(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise SafeRLError(f"--set {key.strip()} expects numbers separated by commas, got '{value}'") from None
            if not all(math.isfinite(limit) and limit >= 0 for limit in limits):
                raise SafeRLError(f"--set {key.strip()}: every cost limit must be a finite number >= 0")
        else:
            rest.append(item)
    return rest, limits


def new_members(config: Config, seeds: list[int] | None, cost_limits: list[float] | None,
                run_dir: Path | None) -> list[Member]:
    """Members of a new run: one (the plain run, in run_dir itself) or several (each in run_dir/seed-<s>)."""
    if seeds is None and cost_limits is None:
        directory = run_dir or default_run_dir(config, [config.train.seed])
        return [Member(Path(directory), config)]
    seeds = seeds if seeds is not None else [config.train.seed]
    plan = plan_members(seeds, cost_limits or [config.env.cost_limit])
    root = Path(run_dir or default_run_dir(config, seeds))
    limits_differ = len({limit for _, limit in plan}) > 1
    members = []
    for seed, limit in plan:
        member_config = copy.deepcopy(config)
        member_config.train.seed, member_config.env.cost_limit = seed, limit
        members.append(Member(root / member_dir_name(seed, limit if limits_differ else None),
                              member_config.validate()))
    names = [m.run_dir.name for m in members]
    if len(set(names)) != len(names):  # limits that differ by less than the name shows, e.g. 10 and 10.0000001
        raise SafeRLError(f"two members would share the directory {max(names, key=names.count)}; give seeds and "
                          "cost limits that differ")
    return members


def start_members(members: list[Member]) -> None:
    """Writes the multi-seed index (a plain run has none) before training starts."""
    if len(members) > 1:
        root = members[0].run_dir.parent
        if (root / MEMBERS_FILE).exists():
            raise SafeRLError(f"{root} already holds a multi-seed run; pass --resume to continue it or pick "
                              "another --run-dir")
        root.mkdir(parents=True, exist_ok=True)
        write_members_file(root, members)


def resumed_members(run_dir: Path, algo: str | None, total_steps: int | None) -> list[Member]:
    """The members of the run in run_dir (a plain run or a multi-seed root), their saved configs checked against
    `algo` when given; `total_steps` is the one setting a resumed run may change (how far to train). A member
    that members.json plans but that was never created (the run was killed while creating its members) gets
    the run's settings with its own seed and limit; the runner writes its directory."""
    from saferl.rundir import load_run_config

    run_dir = Path(run_dir)
    if (run_dir / MEMBERS_FILE).exists():
        entries = read_members_file(run_dir)
        planned = {run_dir / e["dir"]: e for e in entries}
    else:
        planned = {run_dir: None}
    members = []
    for directory, entry in planned.items():
        if entry is not None and not (directory / "config.yaml").exists():
            config = planned_config(run_dir, entry, [d for d in planned if (d / "config.yaml").exists()])
        else:
            config = load_run_config(directory)
        if algo is not None and config.train.algo != algo:
            raise SafeRLError(f"{directory} holds a '{config.train.algo}' run, not '{algo}'")
        if config.train.schedule_steps is None:  # a run from before schedules: its plan was its saved budget
            config.train.schedule_steps = config.train.total_steps
        if total_steps:
            config.train.total_steps = total_steps
        members.append(Member(directory, config))
    return members


def planned_config(root: Path, entry: dict, created: list[Path]) -> Config:
    """The config of a planned member that was never created: the plan's shared settings (or, in a members.json
    from before plans, a created member's) with the member's seed and limit."""
    from saferl.rundir import load_run_config

    shared = read_plan_config(root)
    if shared is not None:
        config = config_from_dict(shared)
    elif created:
        config = load_run_config(created[0])
    else:
        raise SafeRLError(f"{root / entry['dir']} is not a run directory (no config.yaml) and {root / MEMBERS_FILE} "
                          "records no settings to create it from")
    config.train.seed, config.env.cost_limit = entry["seed"], entry["cost_limit"]
    return config.validate()


# Settings a resumed run may change: how far it trains and how it reports progress.
RESUME_MAY_CHANGE = {("train", "total_steps"), ("train", "progress_bar")}  # beyond the plan: check_schedule
PER_MEMBER = {("train", "seed"), ("env", "cost_limit")}  # members differ in these: check_member_settings


def check_resume_flags(members: list[Member], env: str | None, num_envs: int | None, seed: int | None,
                       seeds: list[int] | None, config_file: str | None, sets: list[str] | None,
                       replan: bool = False) -> list[str]:
    """A resumed run keeps the settings it was started with: flags that repeat them are fine, a flag that would
    change one is refused, naming it. The settings in RESUME_MAY_CHANGE are applied to every member; returns a
    note for each."""
    config = members[0].config
    from_file = load_yaml(Path(config_file)) if config_file else {}
    rest, limits = split_cost_limits(sets or [])
    if limits is not None and sorted(limits) != sorted(m.cost_limit for m in members):
        raise SafeRLError(f"--resume: the run's cost limits are {', '.join(f'{m.cost_limit:g}' for m in members)}; "
                          "the --set cost limits conflict")
    layers = [from_file, parse_set(rest)]
    candidate = copy.deepcopy(config)
    for layer in layers:
        merge(candidate, layer)
    if env:
        candidate.env.id = env
    if num_envs:
        candidate.env.num_envs = num_envs
    saved, wanted = config.to_dict(), candidate.to_dict()
    for section, values in wanted.items():
        for key, value in values.items():
            if (section, key) not in RESUME_MAY_CHANGE | PER_MEMBER and value != saved[section][key]:
                raise SafeRLError(f"--resume: the run has {section}.{key}={saved[section][key]!r}; {value!r} "
                                  "conflicts (a resumed run keeps its settings; drop the flag or start a new run)")
    check_member_settings(members, layers, candidate, seed, seeds)
    notes = []
    for section, key in sorted(RESUME_MAY_CHANGE):
        value = wanted[section][key]
        if value != saved[section][key]:
            for member in members:
                setattr(getattr(member.config, section), key, value)
            notes.append(f"note: --resume with {section}.{key}={value!r} (was {saved[section][key]!r})")
    return notes + check_schedule(members, replan)


def check_member_settings(members: list[Member], layers: list[dict], candidate: Config, seed: int | None,
                          seeds: list[int] | None) -> None:
    """A seed or cost limit given to a resumed run (flag, --set, the old lagrange.cost_limit or a --config file:
    `layers`) must be every member's own."""

    def given(section: str, key: str) -> bool:
        return any(key in (layer.get(section) or {}) for layer in layers)

    run_seeds = [m.seed for m in members]
    given_seed = seed if seed is not None else (candidate.train.seed if given("train", "seed") else None)
    if given_seed is not None and [given_seed] != run_seeds:
        raise SafeRLError(f"--resume: the run's seed is {','.join(map(str, run_seeds))}; seed {given_seed} "
                          "conflicts (a resumed run keeps its settings)")
    if seeds is not None and sorted(set(seeds)) != sorted(set(run_seeds)):
        raise SafeRLError(f"--resume: the run's seeds are {','.join(map(str, run_seeds))}; --seeds conflicts")
    limit_given = given("env", "cost_limit") or given("lagrange", "cost_limit")
    limits = sorted({m.cost_limit for m in members})
    if limit_given and limits != [candidate.env.cost_limit]:
        raise SafeRLError(f"--resume: the run's cost limit is {', '.join(f'{limit:g}' for limit in limits)}; "
                          f"{candidate.env.cost_limit:g} conflicts (a resumed run keeps its settings; start a new "
                          "run for another budget)")


def has_schedule(config: Config) -> bool:
    """Whether the algorithm anneals over the run's plan (PPO's actor learning rate)."""
    return config.train.algo in ("ppo", "ppo_lag") and config.ppo.anneal_lr


def check_schedule(members: list[Member], replan: bool) -> list[str]:
    """A resumed run trains beyond the plan it was created with only on request: its annealing horizon
    (`train.schedule_steps`) is part of the experiment, and re-planning it mid-run makes a saw-tooth schedule."""
    config = members[0].config
    plan = config.train.schedule_steps or config.train.total_steps  # runs from before schedules: the saved budget
    steps = config.train.total_steps
    if steps <= plan:
        return []
    if not has_schedule(config):
        return [f"note: training to {steps} steps, beyond the plan of {plan}; {config.train.algo} has no "
                "learning-rate schedule to keep"]
    if not replan:
        raise SafeRLError(f"--resume: the run was planned for {plan} steps and its learning rate anneals to 0 there; "
                          f"training to {steps} needs --replan-schedule (the schedule is then re-planned from the "
                          "current epoch, a different experiment) or a new run with the larger budget")
    for member in members:
        member.config.train.schedule_steps = steps
    return [f"note: --replan-schedule: the learning-rate schedule now anneals over {steps} steps instead of {plan} "
            "(re-planned mid-run)"]


def default_run_dir(config: Config, seeds: list[int], prefix: str = "") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    seed_part = f"seed{seeds[0]}" if len(seeds) == 1 else "seeds" + "-".join(map(str, seeds))
    return Path("runs") / config.env.id / f"{prefix}{config.train.algo}-{seed_part}-{stamp}"


def train_single(config: Config, run_dir: Path) -> dict:
    """Train one plain run to the end (benchmarks and tests); returns its last progress row."""
    from saferl.runner import Runner

    return Runner([Member(Path(run_dir), config)]).train()[0]
