"""Per-epoch logging to progress.csv (one row per epoch) and TensorBoard."""

from __future__ import annotations

import csv
import math
import threading
import warnings
from pathlib import Path

from saferl.errors import SafeRLError
from saferl.files import atomic_write_text

FIRST_COLUMNS = [
    "epoch", "env_steps", "ep_return", "ep_cost", "ep_length", "lagrange_multiplier",
    "approx_kl", "kl", "clip_fraction", "entropy", "fps",
]
# A column's current name -> the name an older saferl wrote the same statistic under (the trust-region family's
# exact KL was "approx_kl" before round 3): a resumed run renames the old column instead of starting a second one.
RENAMED_COLUMNS = {"kl": "approx_kl"}


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


def progress_number(cell, default: float = math.nan) -> float:
    """A progress.csv cell as a number: `default` for an empty cell (a statistic the epoch did not have) and for
    one that is not a number (e.g. `phase`)."""
    if cell is None or cell == "":
        return default
    try:
        return float(cell)
    except (TypeError, ValueError):
        return default


def rows_up_to(path: Path, epoch: int) -> list[dict[str, str]]:
    """The rows of a progress.csv up to `epoch` (a resumed run rewrites the rest). A file whose epochs cannot
    be read is a one-line error: guessing would drop or repeat rows."""
    rows = read_progress(path, notes=[])
    if rows and "epoch" not in rows[0]:
        raise SafeRLError(f"{path} has no 'epoch' column (header: {','.join(list(rows[0])[:4])},...); resuming "
                          "would rewrite it: restore its header, or move it aside to start a new log")
    kept = []
    for row in rows:
        try:
            row_epoch = int(row["epoch"])
        except ValueError:
            raise SafeRLError(f"{path}: a row has epoch {row['epoch']!r}, not an integer; fix or remove that "
                              "row to resume") from None
        if row_epoch <= epoch:
            kept.append(row)
    last = int(kept[-1]["epoch"]) if kept else 0
    if last < epoch:
        print(f"note: {path} ends at epoch {last} but the run resumes at epoch {epoch}: the rows of epochs "
              f"{last + 1}..{epoch} are missing from it", flush=True)
    return kept


class ProgressLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_epoch: int | None = None):
        self.path = Path(run_dir) / "progress.csv"
        self.columns: list[str] | None = None
        if resume_epoch is not None and self.path.exists():
            # Rows logged after the checkpoint we resume from would be repeated: drop them.
            rows = rows_up_to(self.path, resume_epoch)
            if rows:
                self.columns = list(rows[0].keys())
                self.rewrite(rows, self.columns)
            else:
                self.path.unlink()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            quiet_tensorboard_thread_errors()
            self.tensorboard_dir = Path(run_dir) / "tensorboard"
            self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir))

    def log(self, row: dict) -> None:
        try:
            self.write_row(row)
        except OSError as exc:  # a full disk: say which file (a write error carries no file name of its own)
            raise named_os_error(exc, self.path) from None
        if self.writer is not None:
            step = int(row["env_steps"])
            try:
                for key, value in row.items():
                    if isinstance(value, (int, float)) and key not in ("epoch", "env_steps") and math.isfinite(value):
                        self.writer.add_scalar(_tb_tag(key), value, step)
                self.writer.flush()
            except OSError as exc:
                raise named_os_error(exc, self.tensorboard_dir) from None

    def write_row(self, row: dict) -> None:
        if self.columns is None:
            self.columns = [c for c in FIRST_COLUMNS if c in row] + sorted(k for k in row if k not in FIRST_COLUMNS)
            with open(self.path, "w") as handle:
                handle.write(",".join(self.columns) + "\n")
        elif not set(row) <= set(self.columns):  # a renamed statistic, or a new one (a fine-tune's first update)
            self.rename_old_columns(row)
            if not set(row) <= set(self.columns):
                self.add_columns(sorted(set(row) - set(self.columns)))
        values = [_format(row.get(c)) for c in self.columns]
        with open(self.path, "a") as handle:
            handle.write(",".join(values) + "\n")

    def rename_old_columns(self, row: dict) -> None:
        """Rename a column an older saferl wrote (RENAMED_COLUMNS) when `row` has its new name and not the old."""
        renames = {old: new for new, old in RENAMED_COLUMNS.items()
                   if new in row and old not in row and new not in self.columns and old in self.columns}
        if renames:
            old_columns, self.columns = self.columns, [renames.get(c, c) for c in self.columns]
            self.rewrite(self.rows_so_far(), old_columns)

    def add_columns(self, columns: list[str]) -> None:
        """Rewrite the file with `columns` appended to the header; earlier rows get empty cells there."""
        self.columns = self.columns + columns
        self.rewrite(self.rows_so_far(), self.columns)

    def rows_so_far(self) -> list[dict[str, str]]:
        return read_progress(self.path, notes=[]) if self.path.exists() else []

    def rewrite(self, rows: list[dict[str, str]], source_columns: list[str]) -> None:
        """The file anew, atomically: the header `self.columns`, then each row's cells read from `source_columns`
        (position by position: a renamed column reads its old name; a column a row lacks is empty)."""
        lines = [",".join(self.columns)] + [",".join(r.get(c, "") for c in source_columns) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def close(self) -> None:
        """Close the TensorBoard writer; when its thread already failed (the error was raised from `log`), the
        same error again is not news."""
        if self.writer is None:
            return
        try:
            self.writer.close()
        except OSError as exc:
            if not tensorboard_failed(self.writer):
                raise named_os_error(exc, self.tensorboard_dir) from None


def named_os_error(exc: OSError, path: Path) -> OSError:
    """`exc` with `path` as its file name when it has none (the CLI prints "<reason>: <file>")."""
    return exc if exc.filename else OSError(exc.errno, exc.strerror or str(exc), str(path))


def tensorboard_failed(writer) -> bool:
    worker = getattr(getattr(getattr(writer, "file_writer", None), "event_writer", None), "_async_writer", None)
    return getattr(getattr(worker, "_worker", None), "exception", None) is not None


def quiet_tensorboard_thread_errors() -> None:
    """TensorBoard's writer thread re-raises an OSError (a full disk) after storing it for the training thread,
    which reports it in one line on its next write: the thread's own traceback is dropped, nothing else."""
    previous = threading.excepthook
    if getattr(previous, "saferl_quiet", False):
        return

    def hook(args):
        if not (issubclass(args.exc_type, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)

    hook.saferl_quiet = True
    threading.excepthook = hook


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
