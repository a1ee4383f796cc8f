#!/usr/bin/env bash
# Issue 21, row 3: SafetyFetchPush-v0, the README's demonstrations and clone, then 1e6 fine-tuning steps of PPO-Lag
# per estimator (GAE, GRPO and RLOO with G = 8) and seed (0, 1, 2), then 50 evaluation episodes with the mean
# action and 50 sampled, then the table (fetch_summary.py). Resumable: run it again and finished steps are skipped,
# an interrupted fine-tune resumes, and a run whose results are kept in SUMMARY_OUT_DIR/fetch-runs (committed by an
# earlier session, its machine since gone) is not trained again. The clone is the same in every session (the
# demonstrations and BC are seeded and deterministic): clone-sha256.txt, its parameters' hash, goes with each run,
# and fetch_summary.py refuses to mix runs of different clones. Run from the repository root with saferl installed:
#
#   benchmarks/group-estimators/fetch.sh WORK_DIR [SUMMARY_OUT_DIR]
#
# SEEDS and ESTIMATORS pick a subset (two lanes at once must not share a run). Smoke test: DEMOS=20 STEPS=96000
# EVAL_EPISODES=2 SEEDS=0 fetch.sh /tmp/w /tmp/w. Peak memory per fine-tune
# attempt goes to <run>.maxrss-kb.txt beside the run (GNU time's %M, one line per attempt). PYTHON: one with saferl.
set -euo pipefail
work="${1:?usage: fetch.sh WORK_DIR [SUMMARY_OUT_DIR]}"
summary_out="${2:-benchmarks/group-estimators}"
saferl="${SAFERL:-saferl}"
mkdir -p "$work"
evaluate() {  # RUN_DIR OUT_PREFIX: 50 episodes with the mean action, 50 sampled, to OUT_PREFIX<mode>.json
    for mode in deterministic sampled; do
        if [ ! -f "$2$mode.json" ]; then
            flag=()
            [ "$mode" = deterministic ] && flag=(--deterministic)
            "$saferl" eval "$1" --episodes "${EVAL_EPISODES:-50}" "${flag[@]}"
            cp "$1/eval.json" "$2$mode.json.tmp" && mv "$2$mode.json.tmp" "$2$mode.json"
        fi
    done
}
if [ ! -f "$work/push.h5" ]; then
    "$saferl" collect --scripted SafetyFetchPush-v0 --episodes "${DEMOS:-500}" --noise 0.1 --unsafe-fraction 0.3 \
        --out "$work/push.h5"
fi
if [ ! -f "$work/push-bc/checkpoints/latest.pt" ]; then  # the clone's checkpoint is written when BC ends
    [ -d "$work/push-bc" ] && echo "note: $work/push-bc has no finished clone; cloning again" >&2
    rm -rf "$work/push-bc"
    "$saferl" bc --dataset "$work/push.h5" --run-dir "$work/push-bc"
fi
if [ ! -f "$work/clone-sha256.txt" ]; then
    "${PYTHON:-python3}" -c '
import hashlib, sys
import torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)["policy"]
digest = hashlib.sha256()
for name in sorted(state):
    value = state[name]
    digest.update(name.encode())
    digest.update(value.contiguous().numpy().tobytes() if torch.is_tensor(value) else repr(value).encode())
print(digest.hexdigest())' "$work/push-bc/checkpoints/latest.pt" > "$work/clone-sha256.txt.tmp"
    mv "$work/clone-sha256.txt.tmp" "$work/clone-sha256.txt"
fi
mkdir -p "$work/push-ft/clone"  # the clone's own row of the table
cp "$work/clone-sha256.txt" "$work/push-ft/clone/clone-sha256.txt"
evaluate "$work/push-bc" "$work/push-ft/clone/eval-"
for seed in ${SEEDS:-0 1 2}; do
    for estimator in ${ESTIMATORS:-gae grpo rloo}; do
        run="$work/push-ft/$estimator/seed-$seed"
        if [ -f "$summary_out/fetch-runs/$estimator/seed-$seed/eval-sampled.json" ]; then
            echo "$estimator seed $seed: kept in $summary_out/fetch-runs, not trained again"
            continue
        fi
        sets=(env.cost_limit=5 train.steps_per_epoch=16000)
        [ "$estimator" = gae ] || sets+=(train.group_size=8 "train.advantage=$estimator")
        resume=()
        [ -d "$run" ] && resume=(--resume)
        mkdir -p "$(dirname "$run")"
        cp "$work/clone-sha256.txt" "$run.clone-sha256.txt"
        /usr/bin/time -f "%M" -a -o "$run.maxrss-kb.txt" \
            "$saferl" finetune "$work/push-bc" --algo ppo_lag --steps "${STEPS:-1000000}" --seed "$seed" --num-envs 16 \
            --set "${sets[@]}" --run-dir "$run" "${resume[@]}"
        evaluate "$run" "$run/eval-"
    done
done
"${PYTHON:-python3}" "$(dirname "$0")/fetch_summary.py" "$work/push-ft" "$summary_out"
