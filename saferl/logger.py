"""Per-epoch logging to progress.csv (one row per epoch) and TensorBoard."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

from saferl.io import atomic_write_text

FIRST_COLUMNS = [
    "epoch", "env_steps", "ep_return", "ep_cost", "ep_length", "lagrange_multiplier",
    "approx_kl", "clip_fraction", "entropy", "fps",
]


def read_progress(path: Path, notes: list[str] | None = None) -> list[dict[str, str]]:
    """progress.csv as rows of strings (an empty cell is ""), readable while a run is writing or after a crash.

    Every row ends with a newline, so a file without one was interrupted mid-row: that last line is dropped,
    as are rows with the wrong number of fields. Each such problem is one line appended to `notes`, or,
    without a `notes` list, a warning.
    """
    text = Path(path).read_text(errors="replace")
    found = []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    elif len(lines) > 1:
        found.append(f"{path}: the last line is cut mid-row (no newline); it was skipped and the "
                     f"{len(lines) - 2} complete rows are reported")
        lines = lines[:-1]
    header = next(csv.reader([lines[0]]), []) if lines else []
    rows, malformed = [], 0
    for fields in csv.reader(line for line in lines[1:] if line.strip()):
        if len(fields) == len(header):
            rows.append(dict(zip(header, fields, strict=True)))
        else:
            malformed += 1
    if not header:
        found.append(f"{path} is empty")
    elif malformed:
        found.append(f"{path}: skipped {malformed} malformed row(s) with the wrong number of fields")
    if header and not rows:
        found.append(f"{path} has no complete rows")
    if notes is None:
        for note in found:
            warnings.warn(note, stacklevel=2)
    else:
        notes.extend(found)
    return rows


class ProgressLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_epoch: int | None = None):
        self.path = Path(run_dir) / "progress.csv"
        self.columns: list[str] | None = None
        if resume_epoch is not None and self.path.exists():
            # Rows logged after the checkpoint we resume from would be repeated: drop them.
            rows = [r for r in read_progress(self.path, notes=[]) if int(r["epoch"]) <= resume_epoch]
            if rows:
                self.columns = list(rows[0].keys())
                lines = [",".join(self.columns)] + [",".join(r[c] for c in self.columns) for r in rows]
                atomic_write_text(self.path, "\n".join(lines) + "\n")
            else:
                self.path.unlink()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, row: dict) -> None:
        if self.columns is None:
            self.columns = FIRST_COLUMNS + sorted(k for k in row if k not in FIRST_COLUMNS)
            with open(self.path, "w") as handle:
                handle.write(",".join(self.columns) + "\n")
        elif not set(row) <= set(self.columns):  # a new statistic (e.g. a fine-tune's first update after warm-up)
            self.add_columns(sorted(set(row) - set(self.columns)))
        values = [_format(row.get(c)) for c in self.columns]
        with open(self.path, "a") as handle:
            handle.write(",".join(values) + "\n")
        if self.writer is not None:
            step = int(row["env_steps"])
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "env_steps") and math.isfinite(value):
                    self.writer.add_scalar(_tb_tag(key), value, step)
            self.writer.flush()

    def add_columns(self, columns: list[str]) -> None:
        """Rewrite the file with `columns` appended to the header; earlier rows get empty cells there."""
        rows = read_progress(self.path, notes=[]) if self.path.exists() else []
        self.columns = self.columns + columns
        lines = [",".join(self.columns)] + [",".join(r.get(c, "") for c in self.columns) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _tb_tag(key: str) -> str:
    if key.startswith(("ep_", "eval_")):
        return f"episode/{key}"
    if key.startswith("lagrange"):
        return f"lagrange/{key}"
    if key in ("fps", "collect_fps", "update_seconds", "collect_seconds"):
        return f"time/{key}"
    return f"train/{key}"
