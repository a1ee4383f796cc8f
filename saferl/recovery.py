"""`--resume --restart-unreadable`: retrain, from epoch 0, only the members whose checkpoints cannot be read.

Without the flag such a member stops the resume in one line (`Runner.restore`): a run never starts over
silently. With it, the member's unreadable files and its progress.csv are kept aside (`<name>.unreadable`), its
progress rows are written anew, and, when the other members are further on, the member alone is trained up to
their common epoch first (member k of a K-member run collects exactly what a one-member run with its seed
collects), so that every member then resumes together from there.
"""

from __future__ import annotations

from saferl.members import Member
from saferl.rundir import checkpoint_inventory, member_checkpoints
from saferl.runner import Runner

UNREADABLE_SUFFIX = ".unreadable"


def restart_unreadable(members: list[Member], enabled: bool) -> None:
    """Bring members without a usable checkpoint back to the others' common epoch (with `enabled`), printing a
    note for each. Without `enabled` nothing is touched (`Runner.restore` then refuses in one line)."""
    if not enabled:
        return
    available, problems = checkpoint_inventory(members)
    broken = [members[k] for k in problems]
    if not broken:
        print("note: --restart-unreadable: every member has a usable checkpoint; nothing restarts", flush=True)
        return
    healthy = [states for states in available if states]
    common = min(max(states) for states in healthy) if healthy else 0
    for member in broken:
        unreadable = member_checkpoints(member.run_dir)[1]
        progress = member.run_dir / "progress.csv"
        for path in [*unreadable, *([progress] if progress.exists() else [])]:
            path.replace(path.with_name(path.name + UNREADABLE_SUFFIX))
        kept = ", ".join(f"{path.name}{UNREADABLE_SUFFIX}" for path in unreadable)
        print(f"note: --restart-unreadable: {member.run_dir} restarts from epoch 0 (its progress rows are replaced, "
              f"the old ones kept in progress.csv{UNREADABLE_SUFFIX}"
              + (f"; the unreadable files are kept as {kept}" if kept else "") + ")"
              + (f" and trains alone to epoch {common}, where the other members are" if common else ""), flush=True)
    if common:
        catch_up(broken, common)


def catch_up(members: list[Member], epoch: int) -> None:
    """Train `members` from scratch to `epoch`; the runner checkpoints on its usual epochs and at `epoch`."""
    Runner(members, resume=True, stop_epoch=epoch).train()
