#!/usr/bin/env bash
# The benchmark queue, in the order the evidence is needed: the 1e6 ablation (which chooses the defaults), the
# navigation-learning grid (OmniSafe's implementation details), the 1e7 campaign's cells the safety promise is judged
# on (HalfCheetahVelocity and PointGoal1), the group estimators (issue 21), then the campaign's Car, Button and PID
# cells. Resumable: run it again and finished cells are skipped, interrupted ones resume. It trains from a frozen
# copy of one commit (a git worktree with its own virtualenv under OUT_ROOT/code), so that editing or merging in the
# working tree never reaches a running benchmark, and the whole script is read before it starts (main below), so
# replacing this file does not reach a running queue either.
#
#   nohup setsid benchmarks/queue.sh [COMMIT] [OUT_ROOT] [STAGE ...] > queue.log 2>&1 &
#
# COMMIT defaults to HEAD, OUT_ROOT to ~/saferl-runs, the stages to all of them in this order: ablation,
# ablation-mixed, navigation-learning, campaign, group-estimators (the HalfCheetah and PointGoal1 grid, then the
# Fetch table), group-sweep (the group-size sweep), campaign-navigation, campaign-pid. One OUT_ROOT
# holds one commit, and a stage runs the grid files of that commit: a stage whose files the commit lacks is refused
# before anything starts. Where the evidence stands: ablation and navigation-learning ran at 6378eac
# (~/saferl-runs); ablation-mixed and navigation-learning/cpo.yaml at 0122fb1 (~/saferl-mixed; cpo.yaml is no
# stage: `saferl benchmark` by hand); the campaign stages at the commit that made the chosen defaults the
# defaults, in an OUT_ROOT of their own (~/saferl-campaign); the group estimators' two stages at be4f034 (the same
# defaults; there critic-free PPO steps the actor alone, and the sweep has its own stage; ~/saferl-groups). A
# stage that fails is reported, the queue
# goes on to the next, and it exits 1 at the end (the stage's log says why; run the queue again to resume it).
# Results to commit: OUT_ROOT/<grid>/results.{json,md} and figures (never checkpoints); the group estimators' Fetch
# table: OUT_ROOT/group-estimators-fetch/fetch.{json,md}.
set -euo pipefail

# One row per grid a stage trains: the stage, the grid file under benchmarks/ (without .yaml), the folder under
# OUT_ROOT, the cells in flight at once. Two cells at a time, one CPU each: a cell's update (about 80% of a PPO-Lag
# epoch) runs on one thread, so one cell alone leaves a core idle most of the time; a cell's numbers do not depend
# on what runs beside it. The group estimators' grids run one cell at a time, because their wall times are part of
# the comparison (and group-estimators ends with the Fetch table, fetch.sh, before the sweep's stage).
STAGE_GRIDS="
ablation              ablation-1e6/grid                ablation-1e6              2
ablation-mixed        ablation-1e6/mixed               ablation-1e6-mixed        2
navigation-learning   navigation-learning/grid         navigation-learning       2
campaign              campaign-1e7/grid                campaign-1e7              2
group-estimators      group-estimators/grid            group-estimators          1
group-sweep           group-estimators/sweep           group-estimators-sweep    1
campaign-navigation   campaign-1e7/navigation-grid     campaign-1e7-navigation   2
campaign-pid          campaign-1e7/pid-grid            campaign-1e7-pid          2
"
mapfile -t STAGES < <(awk 'NF && !seen[$1]++ {print $1}' <<< "$STAGE_GRIDS")  # the table's stages, in its order
FETCH=benchmarks/group-estimators/fetch.sh

stage_rows() {  # the table's rows of one stage (none: an unknown stage)
    awk -v stage="$1" '$1 == stage {print $2, $3, $4}' <<< "$STAGE_GRIDS"
}

stage_files() {  # the files of the frozen commit a stage runs
    local grid out parallel
    while read -r grid out parallel; do echo "benchmarks/$grid.yaml"; done < <(stage_rows "$1")
    [ "$1" != group-estimators ] || echo "$FETCH"
    # the campaign grid without Car and Button: before 7022cdf it held all four tasks, and navigation-grid.yaml
    # did not exist yet
    [ "$1" != campaign ] || echo benchmarks/campaign-1e7/navigation-grid.yaml
}

run_stage() {  # every grid of the stage runs, even when one before it failed (then the stage fails)
    local grid out parallel failed=0
    while read -r grid out parallel; do  # (stdin is the table: the commands read /dev/null)
        .venv/bin/saferl benchmark "benchmarks/$grid.yaml" --out "$root/$out" --max-parallel "$parallel" \
            --cpus-per-cell 1 < /dev/null >> "$root/$out.log" 2>&1 || failed=$?
    done < <(stage_rows "$1")
    if [ "$1" = group-estimators ]; then
        SAFERL=.venv/bin/saferl PYTHON=.venv/bin/python "$FETCH" "$root/group-estimators-fetch" \
            "$root/group-estimators-fetch" < /dev/null >> "$root/group-estimators-fetch.log" 2>&1 || failed=$?
    fi
    return "$failed"
}

main() {
    repo="$(cd "$(dirname "$0")/.." && pwd)"
    commit="${1:-HEAD}"
    root="${2:-$HOME/saferl-runs}"
    shift $(( $# < 2 ? $# : 2 ))
    local stages=("$@") stage
    [ ${#stages[@]} -gt 0 ] || stages=("${STAGES[@]}")
    for stage in "${stages[@]}"; do  # a misspelt stage is refused before anything runs
        [ -n "$(stage_rows "$stage")" ] || { echo "queue: unknown stage '$stage' (one of: ${STAGES[*]})" >&2; exit 2; }
    done
    local code="$root/code" wanted
    mkdir -p "$root"
    wanted="$(git -C "$repo" rev-parse "$commit")"
    if [ ! -d "$code" ]; then
        git -C "$repo" worktree add --detach "$code" "$wanted"
    elif [ "$(git -C "$code" rev-parse HEAD)" != "$wanted" ]; then
        echo "queue: $code holds $(git -C "$code" rev-parse --short HEAD), not $commit; one OUT_ROOT holds one commit" >&2
        exit 2
    fi
    for stage in "${stages[@]}"; do  # the commit must have what each stage runs
        for file in $(stage_files "$stage"); do
            [ -e "$code/$file" ] || { echo "queue: stage $stage needs $file, which $commit does not have" >&2; exit 2; }
        done
    done
    make -C "$code" .venv/.installed
    cd "$code"
    export RAY_worker_niceness=0  # Ray lowers its workers to nice 15 by default: the benchmark would yield to anything
    local any_failed=0 status
    for stage in "${stages[@]}"; do
        status=0
        run_stage "$stage" || status=$?
        if [ "$status" -ne 0 ]; then
            echo "queue: stage $stage failed (exit $status), see $root/*.log; going on" >&2
            any_failed=1
        fi
    done
    exit "$any_failed"
}

main "$@"
exit
