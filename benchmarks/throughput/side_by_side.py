"""Side by side, interleaved, 3 repeats: the round-1 single-seed PPO-Lag path vs the member path at K = 1, 4, 8.

Usage: python side_by_side.py OUT.json ROUND1_CHECKOUT [PYTHON]
ROUND1_CHECKOUT is a checkout of the round-1 code (`git worktree add /tmp/round1 653ea40`, the round-1 head);
it is put first on PYTHONPATH so the same interpreter imports its saferl. Each measurement is
`train_rate` (a real Runner.train() of 40,000 steps per member at the project defaults, 16 envs; in
`saferl.throughput`, called `saferl.bench` before round 3, so the round-1 side still imports that name)
in a fresh process.
"""
import json
import os
import statistics
import subprocess
import sys

PY = sys.argv[3] if len(sys.argv) > 3 else sys.executable
OLD = ("import json; from saferl.bench import train_rate; "
       "print('RESULT', json.dumps(train_rate('ppo_lag', 'SafetyHalfCheetahVelocity-v1', 40000, 16, [])))")
NEW = ("import json; from saferl.throughput import train_rate; "
       "print('RESULT', json.dumps(train_rate('ppo_lag', 'SafetyHalfCheetahVelocity-v1', 40000, 16, [], members={k})))")
def run(code, env):
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env, cwd="/tmp").stdout
    return json.loads(out.split("RESULT", 1)[1])["steps_per_s"]
base = dict(os.environ)
old_env = dict(base, PYTHONPATH=sys.argv[2])
rates = {"round-1 single": [], "K=1": [], "K=4": [], "K=8": []}
for rep in range(3):
    rates["round-1 single"].append(run(OLD, old_env))
    for k in (1, 4, 8):
        rates[f"K={k}"].append(run(NEW.format(k=k), base))
    print(rep, {k: round(v[-1]) for k, v in rates.items()}, flush=True)
summary = {k: {"runs": v, "min": min(v), "median": statistics.median(v)} for k, v in rates.items()}
json.dump(summary, open(sys.argv[1], "w"), indent=1)
for k, s in summary.items():
    runs = ", ".join(f"{x:,.0f}" for x in s["runs"])
    print(f"{k}: median {s['median']:,.0f} steps/s (min {s['min']:,.0f}; runs {runs})")
