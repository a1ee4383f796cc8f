"""Per-epoch logging to progress.csv (one row per epoch) and TensorBoard."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from saferl.io import atomic_write_text

FIRST_COLUMNS = [
    "epoch", "env_steps", "ep_return", "ep_cost", "ep_length", "lagrange_multiplier",
    "approx_kl", "clip_fraction", "entropy", "fps",
]


def read_progress(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class ProgressLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_epoch: int | None = None):
        self.path = Path(run_dir) / "progress.csv"
        self.columns: list[str] | None = None
        if resume_epoch is not None and self.path.exists():
            # Rows logged after the checkpoint we resume from would be repeated: drop them.
            rows = [r for r in read_progress(self.path) if int(r["epoch"]) <= resume_epoch]
            if rows:
                self.columns = list(rows[0].keys())
                lines = [",".join(self.columns)] + [",".join(r[c] or "" for c in self.columns) for r in rows]
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
        values = [_format(row.get(c)) for c in self.columns]
        with open(self.path, "a") as handle:
            handle.write(",".join(values) + "\n")
        if self.writer is not None:
            step = int(row["env_steps"])
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "env_steps") and math.isfinite(value):
                    self.writer.add_scalar(_tb_tag(key), value, step)
            self.writer.flush()

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
