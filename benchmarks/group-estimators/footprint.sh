#!/usr/bin/env bash
# Issue 21's wall-time and memory columns for the HalfCheetah and PointGoal1 rows, measured apart from the grid:
# the grid's cells train beside other benchmarks on this shared machine, so their `train_s` says how long they
# took there, not what each estimator costs. Here each row's cell (3 seeds as members, the grid's settings: 16
# envs, 16,000 steps per epoch, G = 8) trains 3 epochs alone, one row after the other; the table has the median
# of epochs 2 and 3's seconds (collection and update, from progress.csv; epoch 1 holds the start-up) and the peak
# resident set of the process (the buffer and the networks are allocated once: memory does not grow after the
# first epoch). A row whose run directory already holds its 3 epochs is not trained again (delete WORK_DIR to
# measure afresh). Run it on a quiet machine (pause other benchmarks), from the repository root, saferl installed:
#
#   benchmarks/group-estimators/footprint.sh WORK_DIR [OUT_MD]
set -euo pipefail
work="${1:?usage: footprint.sh WORK_DIR [OUT_MD]}"
out="${2:-benchmarks/group-estimators/footprint.md}"
saferl="${SAFERL:-saferl}"
python="${PYTHON:-python3}"
mkdir -p "$work"
epoch_seconds() {  # median over epochs 2.. of the update epochs run, collection, update and their sum (one member)
    "$python" - "$1" <<'PY'
import statistics, sys
from saferl.logger import read_progress
rows = read_progress(sys.argv[1])[1:]
collect = statistics.median(float(r["collect_seconds"]) for r in rows)
update = statistics.median(float(r["update_seconds"]) for r in rows)
total = statistics.median(float(r["collect_seconds"]) + float(r["update_seconds"]) for r in rows)
epochs = statistics.median(int(r["update_epochs"]) for r in rows)
print(f"{total:.1f} | {collect:.1f} | {update:.1f} | {epochs:g}")
PY
}
trained() {  # the row's 3 complete epochs and its peak memory are there
    [ -s "$1.kb" ] && [ -f "$1/seed-0/progress.csv" ] && "$python" -c \
        "import sys; from saferl.logger import read_progress; sys.exit(len(read_progress(sys.argv[1], [])) != 3)" \
        "$1/seed-0/progress.csv"
}
{
    echo "# Group estimators: seconds per epoch and memory per row"
    echo
    echo "One grid cell's process (3 seeds as members, 16 envs, 16,000 steps per epoch, G = 8), 3 epochs, alone on"
    echo "the machine; seconds: median of epochs 2 and 3 (all 3 members, 48,000 env steps per epoch); memory: the"
    echo "process's peak resident set. Made by \`benchmarks/group-estimators/footprint.sh\` at commit"
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown) on $(nproc) cores."
    echo
    echo "| task | estimator | seconds per epoch | collection | update | update epochs run (of 40) | peak RSS (MB) |"
    echo "|---|---|---|---|---|---|---|"
    for env in SafetyHalfCheetahVelocity-v1 SafetyPointGoal1-v0; do
        for estimator in gae rloo rloo_step grpo; do
            sets=(env.num_envs=16 train.steps_per_epoch=16000 train.progress_bar=false train.tensorboard=false)
            [ "$estimator" = gae ] || sets+=(train.group_size=8 "train.advantage=$estimator")
            run="$work/$env-$estimator"
            if ! trained "$run"; then
                rm -rf "$run"
                /usr/bin/time -f "%M" -o "$run.kb" "$saferl" train --algo ppo_lag --env "$env" \
                    --seeds 0,1,2 --steps 48000 --set "${sets[@]}" --run-dir "$run" > /dev/null
            fi
            echo "| $env | $estimator | $(epoch_seconds "$run/seed-0/progress.csv") | $(( $(tail -1 "$run.kb") / 1024 )) |"
        done
    done
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
