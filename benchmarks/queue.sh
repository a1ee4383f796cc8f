#!/usr/bin/env bash
# The benchmark queue, in the order the evidence is needed: the 1e6 ablation (which chooses the defaults), the
# navigation-learning grid (OmniSafe's implementation details), then the 1e7 campaign. Resumable: run it again and
# finished cells are skipped, interrupted ones resume. It trains from a frozen copy of one commit (a git worktree
# with its own virtualenv), so that editing or merging in the working tree never reaches a running benchmark.
#
#   nohup setsid benchmarks/queue.sh [COMMIT] [OUT_ROOT] > queue.log 2>&1 &
#
# COMMIT defaults to HEAD, OUT_ROOT to ~/saferl-runs. Results to commit: OUT_ROOT/<grid>/results.{json,md} and
# figures (never checkpoints).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="${1:-HEAD}"
root="${2:-$HOME/saferl-runs}"
code="$root/code"
mkdir -p "$root"
if [ ! -d "$code" ]; then
    git -C "$repo" worktree add --detach "$code" "$commit"
else
    git -C "$code" checkout --detach "$(git -C "$repo" rev-parse "$commit")"
fi
make -C "$code" .venv/.installed
cd "$code"
for pair in ablation-1e6/grid:ablation-1e6 navigation-learning/grid:navigation-learning \
            campaign-1e7/grid:campaign-1e7 campaign-1e7/pid-grid:campaign-1e7-pid; do
    grid="${pair%%:*}" out="$root/${pair##*:}"
    .venv/bin/saferl benchmark "benchmarks/$grid.yaml" --out "$out" --max-parallel 1 >> "$out.log" 2>&1
done
