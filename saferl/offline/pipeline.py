"""`saferl offline-pipeline`: does starting from demonstrations pay, and is the start safe? (a benchmark, not a test)

expert (a PPO-Lag run we train, or `--expert RUN_DIR`) -> noisy demonstrations -> BC -> PPO-Lag fine-tune,
against PPO-Lag from scratch with the same env-step budget and settings (`--set` applies to all three RL
runs). With `--scripted` (the safe Fetch tasks) the demonstrator is the task's scripted controller instead of an
RL expert, made imperfect by action noise and a share of episodes from its unsafe variant (`--unsafe-fraction`).
Reported (and written as JSON):

- the clone's return and cost (deterministic eval) and as rolled out in the warm-up epochs;
- the lowest per-epoch return in the first 10% of the policy-update epochs (at least one; the warm-up
  epochs, whose actor is frozen, precede this window), absolute and minus the clone's return: the
  "unlearning dip";
- env steps (warm-up included) until the windowed training return first reaches the expert's return, or
  "not reached"; and the same with the windowed cost also within the limit. Expert and clone are measured
  by deterministic evaluation (what the policy can do; the expert's stochastic numbers are kept too), so
  reaching it with exploration noise on is the conservative reading;
- cumulative constraint violations (the sum of all step costs, i.e. of episode costs) of each run;
- for tasks that report success: the clone's success rate, each run's final success rate (last 100 episodes),
  the lowest in the first 10% of the fine-tune's updates, and the per-epoch curve of return, cost and success.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from saferl.config import build_config
from saferl.errors import SafeRLError
from saferl.files import versions, write_json
from saferl.logger import progress_number, read_progress

EARLY_FRACTION = 0.1  # "the first 10% of fine-tuning"
CURVE_COLUMNS = ("epoch_ep_return", "epoch_ep_cost", "success_rate")  # per epoch, after env_steps


def steps_to_reach(rows: list[dict], target: float, cost_limit: float | None = None) -> int | None:
    """Env steps at the end of the first epoch whose windowed return is >= target (and, given a limit, whose
    windowed cost is within it), None if none is."""
    for row in rows:
        within = cost_limit is None or progress_number(row["ep_cost"]) <= cost_limit
        if progress_number(row["ep_return"]) >= target and within:
            return int(row["env_steps"])
    return None


def early_updates(rows: list[dict]) -> list[dict]:
    """The first EARLY_FRACTION of the policy-update epochs (at least one; warm-up epochs excluded)."""
    updates = [r for r in rows if r.get("phase", "finetune") != "warmup"]
    return updates[:max(1, int(EARLY_FRACTION * len(updates)))]


def early_dip(rows: list[dict], reference: float) -> dict:
    """Lowest per-epoch return among the first EARLY_FRACTION of the policy-update epochs (at least one)."""
    early = early_updates(rows)
    returns = [progress_number(r.get("epoch_ep_return")) for r in early]
    returns = [x for x in returns if math.isfinite(x)] or [progress_number(early[0]["ep_return"])]
    lowest = min(returns)
    return {"epochs": len(early), "lowest_return": lowest, "minus_bc": lowest - reference,
            "relative_to_bc": lowest / reference if reference > 0 else None}


def run_summary(rows: list[dict], expert_return: float, cost_limit: float, reference: float) -> dict:
    last = rows[-1]
    summary = {"env_steps": int(last["env_steps"]), "final_return": progress_number(last["ep_return"]),
               "final_cost": progress_number(last["ep_cost"]), "total_violations": int(float(last["total_violations"])),
               "steps_to_expert_return": steps_to_reach(rows, expert_return),
               "steps_to_expert_return_within_limit": steps_to_reach(rows, expert_return, cost_limit),
               "early_dip": early_dip(rows, reference),
               "curve": [[int(r["env_steps"]), *(progress_number(r.get(key)) for key in CURVE_COLUMNS)] for r in rows]}
    if "success_rate" in last:
        summary["final_success"] = progress_number(last["success_rate"])
        summary["early_lowest_success"] = min(progress_number(r.get("success_rate")) for r in early_updates(rows))
    return summary


def eval_summary(evaluation: dict) -> dict:
    return {"return": evaluation["mean_return"], "cost": evaluation["mean_cost"], "costs": evaluation["mean_costs"],
            "success_rate": evaluation.get("success_rate"), "episodes": len(evaluation["episodes"])}


def scripted_reference(env_id: str, episodes: int, seed: int) -> dict:
    """The safe scripted demonstrator without noise: the 'expert' a fine-tune is measured against."""
    from saferl.envs.seeds import SCRIPTED_REFERENCE_OFFSET
    from saferl.offline.scripted import run_scripted

    result = run_scripted(env_id, episodes, seed + SCRIPTED_REFERENCE_OFFSET)
    return {"run_dir": None, "return": float(result["returns"].mean()), "cost": float(result["costs"].sum(1).mean()),
            "success_rate": float(result["successes"].mean())}


def run_offline_pipeline(env_id: str, out: Path, work_dir: Path, expert_dir: Path | None, expert_steps: int,
                         demo_episodes: int, noise: float, bc_filter: str, bc_epochs: int, steps: int, num_envs: int,
                         seed: int, cost_limit: float | None, sets: list[str], scripted: bool = False,
                         unsafe_fraction: float = 0.0) -> dict:
    from saferl.evaluation import evaluate
    from saferl.launch import train_single
    from saferl.offline.bc import train_bc
    from saferl.offline.collect import collect_demonstrations
    from saferl.offline.finetune import build_finetune_config, finetune_runner
    from saferl.offline.scripted import collect_scripted
    from saferl.rundir import load_run_config

    quiet = ["train.tensorboard=false"]
    common = [f"env.id={env_id}", f"train.seed={seed}"] + ([f"env.cost_limit={cost_limit}"] if cost_limit
                                                           is not None else [])
    work_dir.mkdir(parents=True, exist_ok=True)
    timings = {}

    start = time.perf_counter()
    if scripted:
        print(f"[1/5] expert: the scripted demonstrator of {env_id}", flush=True)
        expert = expert_stochastic = scripted_reference(env_id, 50, seed)
    elif expert_dir is None:
        expert_dir = work_dir / "expert"
        print(f"[1/5] expert: PPO-Lag for {expert_steps} steps -> {expert_dir}", flush=True)
        config = build_config("ppo_lag", sets=common + quiet + [f"env.num_envs={num_envs}",
                                                                f"train.total_steps={expert_steps}", *sets])
        train_single(config, expert_dir)
    else:
        expert_env = load_run_config(expert_dir).env.id
        if expert_env != env_id:
            raise SafeRLError(f"--expert {expert_dir} was trained on {expert_env}, not {env_id}")
        print(f"[1/5] expert: {expert_dir}", flush=True)
    if not scripted:
        expert_stochastic = evaluate(expert_dir, 10, deterministic=False)
        expert = evaluate(expert_dir, 10, deterministic=True)  # last, so the run's eval.json is this one
    timings["expert"] = time.perf_counter() - start
    if scripted:
        print(f"      demonstrator return {expert['return']:.1f} cost {expert['cost']:.1f} success "
              f"{expert['success_rate']:.0%}", flush=True)
    else:
        print(f"      expert return {expert['mean_return']:.1f} cost {expert['mean_cost']:.1f} (deterministic; "
              f"stochastic {expert_stochastic['mean_return']:.1f} / {expert_stochastic['mean_cost']:.1f})", flush=True)

    start = time.perf_counter()
    if scripted:
        demos = collect_scripted(env_id, demo_episodes, work_dir / "demos.h5", noise, unsafe_fraction, seed)
    else:
        demos = collect_demonstrations(expert_dir, demo_episodes, work_dir / "demos.h5", noise_std=noise)
    timings["collect"] = time.perf_counter() - start
    print(f"[2/5] {demos['episodes']} demonstrations (noise {noise}): return {demos['mean_return']:.1f} "
          f"cost {demos['mean_cost']:.1f}", flush=True)

    start = time.perf_counter()
    bc_config = build_config("bc", sets=common + [f"bc.dataset={work_dir / 'demos.h5'}", f"bc.filter={bc_filter}",
                                                  f"bc.epochs={bc_epochs}"])
    bc = train_bc(bc_config, work_dir / "bc")
    timings["bc"] = time.perf_counter() - start
    print(f"[3/5] BC ({bc['epochs_run']} epochs): return {bc['eval_return']:.1f} cost {bc['eval_cost']:.1f}",
          flush=True)

    budget = [f"train.total_steps={steps}", f"env.num_envs={num_envs}", "train.tensorboard=false"]
    start = time.perf_counter()
    print(f"[4/5] PPO-Lag fine-tune from BC, {steps} steps", flush=True)
    finetune_config = build_finetune_config(load_run_config(work_dir / "bc"), "ppo_lag",
                                            sets=[f"train.seed={seed}", *budget, *sets])
    finetune_runner(finetune_config, work_dir / "finetune", work_dir / "bc").train()
    timings["finetune"] = time.perf_counter() - start

    start = time.perf_counter()
    print(f"[5/5] PPO-Lag from scratch, {steps} steps", flush=True)
    scratch_config = build_config("ppo_lag", sets=common + budget + sets)
    train_single(scratch_config, work_dir / "scratch")
    timings["scratch"] = time.perf_counter() - start

    # The same deterministic evaluation as the clone's, so success and cost compare like for like.
    evaluations = {name: evaluate(work_dir / name, bc_config.bc.eval_episodes, deterministic=True)
                   for name in ("finetune", "scratch")}
    finetune_rows = read_progress(work_dir / "finetune" / "progress.csv")
    scratch_rows = read_progress(work_dir / "scratch" / "progress.csv")
    warmup = [progress_number(r["epoch_ep_return"]) for r in finetune_rows if r["phase"] == "warmup"]
    limit = finetune_config.env.cost_limit
    expert_return = expert["return"] if scripted else expert["mean_return"]
    result = {
        "env_id": env_id,
        "budget_steps": steps,
        "cost_limit": limit,
        "expert": expert if scripted else {
            "run_dir": str(expert_dir), "return": expert["mean_return"], "cost": expert["mean_cost"],
            "stochastic_return": expert_stochastic["mean_return"], "stochastic_cost": expert_stochastic["mean_cost"]},
        "demonstrations": demos | {"noise": noise},
        "bc": {"return": bc["eval_return"], "cost": bc["eval_cost"], "epochs": bc["epochs_run"],
               "success_rate": bc.get("eval_success_rate"),
               "warmup_rollout_return": sum(warmup) / len(warmup) if warmup else None},
        "finetune": run_summary(finetune_rows, expert_return, limit, bc["eval_return"]) | {
            "eval": eval_summary(evaluations["finetune"])},
        "scratch": run_summary(scratch_rows, expert_return, limit, bc["eval_return"]) | {
            "eval": eval_summary(evaluations["scratch"])},
        "finetune_settings": finetune_config.to_dict()["finetune"],
        "seconds": timings,
        "work_dir": str(work_dir),
        "versions": versions(),
    }
    write_json(out, result)
    print_result(result, out)
    return result


def print_result(result: dict, out: Path) -> None:
    def reached(value):
        return "not reached" if value is None else f"{value} steps"

    ft, sc = result["finetune"], result["scratch"]
    print(f"\n{result['env_id']}, budget {result['budget_steps']} steps, cost limit {result['cost_limit']:g}")
    print(f"expert:   return {result['expert']['return']:.1f}, cost {result['expert']['cost']:.1f}"
          + success_text(result["expert"].get("success_rate")))
    print(f"BC:       return {result['bc']['return']:.1f}, cost {result['bc']['cost']:.1f}"
          + success_text(result["bc"].get("success_rate")))
    dip = ft["early_dip"]
    print(f"fine-tune: lowest return in the first {EARLY_FRACTION:.0%} of its updates {dip['lowest_return']:.1f} "
          f"({dip['minus_bc']:+.1f} vs BC)")
    print(f"{'':10}{'final return':>14}{'final cost':>12}{'to expert return':>20}{'(within limit)':>20}"
          f"{'violations':>12}")
    for name, run in (("fine-tune", ft), ("scratch", sc)):
        print(f"{name:10}{run['final_return']:>14.1f}{run['final_cost']:>12.1f}"
              f"{reached(run['steps_to_expert_return']):>20}{reached(run['steps_to_expert_return_within_limit']):>20}"
              f"{run['total_violations']:>12}" + success_text(run.get("final_success")))
    for name, run in (("fine-tune", ft), ("scratch", sc)):
        ev = run["eval"]
        print(f"{name} (deterministic eval, {ev['episodes']} episodes): return {ev['return']:.1f}, cost "
              f"{ev['cost']:.1f}" + success_text(ev["success_rate"]))
    if "early_lowest_success" in ft:
        print(f"fine-tune: lowest success rate in the first {EARLY_FRACTION:.0%} of its updates "
              f"{ft['early_lowest_success']:.0%}")
    print(f"-> {out}")


def success_text(rate) -> str:
    return "" if rate is None or not math.isfinite(rate) else f", success {rate:.0%}"
