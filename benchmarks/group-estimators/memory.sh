#!/usr/bin/env bash
# Issue 21's memory column for the HalfCheetah and PointGoal1 rows: the peak resident set of one cell's process
# (3 seeds as members, the grid's settings: 16 envs, 16,000 steps per epoch, G = 8), measured over its first two
# epochs, which hold a whole collection and a whole update each (memory does not grow after them: the buffer and
# the networks are allocated once). `saferl benchmark` records wall time but not memory.
#
#   benchmarks/group-estimators/memory.sh WORK_DIR [OUT_MD]     (from the repository root, saferl installed)
set -euo pipefail
work="${1:?usage: memory.sh WORK_DIR [OUT_MD]}"
out="${2:-benchmarks/group-estimators/memory.md}"
saferl="${SAFERL:-saferl}"
mkdir -p "$work"
{
    echo "# Group estimators: memory per row"
    echo
    echo "Peak resident set of one grid cell's process (3 seeds as members, 16 envs, 16,000 steps per epoch, G = 8),"
    echo "over its first two epochs. Made by \`benchmarks/group-estimators/memory.sh\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    echo "| task | estimator | peak RSS of the cell's process (MB) |"
    echo "|---|---|---|"
    for env in SafetyHalfCheetahVelocity-v1 SafetyPointGoal1-v0; do
        for estimator in gae rloo rloo_step grpo; do
            sets=(env.num_envs=16 train.steps_per_epoch=16000 train.progress_bar=false train.tensorboard=false)
            [ "$estimator" = gae ] || sets+=(train.group_size=8 "train.advantage=$estimator")
            rm -rf "$work/$env-$estimator"
            /usr/bin/time -f "%M" -o "$work/$env-$estimator.kb" "$saferl" train --algo ppo_lag --env "$env" \
                --seeds 0,1,2 --steps 32000 --set "${sets[@]}" --run-dir "$work/$env-$estimator" > /dev/null
            echo "| $env | $estimator | $(( $(tail -1 "$work/$env-$estimator.kb") / 1024 )) |"
        done
    done
} > "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
