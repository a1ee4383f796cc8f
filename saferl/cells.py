"""What a benchmark cell finds in its directory before it trains: is it this grid's cell, and is it whole.

A cell's directory may hold runs from an earlier call. They are used only when they were trained with the
grid's settings (the resolved config each member saved is compared with the grid's, as `train --resume`
compares its flags), and only when every member's progress.csv reaches its checkpoint: a file that lost rows
would report older numbers as the cell's.
"""

from __future__ import annotations

from pathlib import Path

from saferl.errors import SafeRLError
from saferl.members import MEMBERS_FILE, member_dir_name


def existing_members(root: Path, seeds: list[int], algo: str):
    """The members already in a cell's directory (a multi-seed root, or the one seed's run), or []."""
    from saferl.launch import resumed_members

    if (root / MEMBERS_FILE).exists():
        return resumed_members(root, None, None)
    return [member for seed in seeds if (root / member_dir_name(seed) / "config.yaml").is_file()
            for member in resumed_members(root / member_dir_name(seed), None, None)]


def check_cell_settings(spec: dict, sets: list[str]) -> None:
    """Refuse runs in the cell's directory that were trained with other settings than the grid's (`sets`)."""
    from saferl.launch import check_resume_flags

    root = Path(spec["dir"])
    members = existing_members(root, spec["seeds"], spec["algo"])
    if not members:
        return
    try:
        if members[0].config.train.algo != spec["algo"]:
            raise SafeRLError(f"they are '{members[0].config.train.algo}' runs")
        check_resume_flags(members, spec["env"], None, None, spec["seeds"], None, sets)
    except SafeRLError as exc:
        reason = str(exc).removeprefix("--resume: ").split(" (a resumed run")[0]
        raise SafeRLError(f"{root} holds runs trained with other settings than the grid's ({reason}); give a new "
                          "--out, or the grid they were trained with") from None


def check_rows_reach_checkpoints(spec: dict) -> None:
    """Refuse a member whose progress.csv ends before its checkpoint (rows lost: its numbers would be stale)."""
    from saferl.logger import read_progress
    from saferl.rundir import member_checkpoints

    for seed in spec["seeds"]:
        run_dir = Path(spec["dir"]) / member_dir_name(seed)
        states = member_checkpoints(run_dir)[0] if (run_dir / "checkpoints").is_dir() else {}
        if not states:
            continue
        path = run_dir / "progress.csv"
        rows = read_progress(path, notes=[]) if path.is_file() else []
        epochs = [int(row["epoch"]) for row in rows if row.get("epoch", "").isdigit()]
        last = max(epochs, default=0)
        if last < max(states):
            raise SafeRLError(f"{path} ends at epoch {last} but the checkpoint is at epoch {max(states)}: rows were "
                              "lost, and the cell would report older numbers; restore the file, or train the cell "
                              "in a new --out")
