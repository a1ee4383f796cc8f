"""`saferl report`: load the runs, evaluate them, summarise, and write report.html, report.md and report.json."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from saferl.errors import SafeRLError
from saferl.files import atomic_write_bytes, atomic_write_text
from saferl.report.render import Image, jsonable, to_html, to_markdown
from saferl.report.runs import assign_labels, attach_evaluation, group_runs, load_run
from saferl.report.sections import build_sections, group_label
from saferl.report.summary import budget_rows, summarise_group, summarise_run


def build_report(run_dirs, out=None, eval_episodes: int = 10, video: bool = False,
                 deterministic: bool = False) -> dict:
    """Write report.html, report.md and report.json (+ report_files/ for the Markdown's images) to `out`.

    Default `out`: the run directory for one run, reports/<time> for several. Returns the paths and warnings.
    """
    from saferl.report.video import render_video

    if eval_episodes < 0:
        raise SafeRLError(f"--eval-episodes must be >= 0, got {eval_episodes}")
    if not run_dirs:
        raise SafeRLError("give at least one run directory")
    unique = list(dict.fromkeys(Path(p).resolve() for p in run_dirs))
    runs = [load_run(p) for p in unique]
    assign_labels(runs)
    out = Path(out) if out else runs[0].path if len(runs) == 1 else Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    files = out / "report_files"
    for run in runs:
        attach_evaluation(run, eval_episodes, deterministic)
    groups = group_runs(runs)
    if video:
        files.mkdir(parents=True, exist_ok=True)
        for group in groups:  # one episode per group: rendering is the slow part
            run = group[0]
            run.video = render_video(run.path, files / f"video-{runs.index(run)}.gif", run.env_id, deterministic)
            if not run.video.get("ok"):
                run.notes.append(f"{run.path}: no video, rendering is unavailable: {run.video['reason']}")
    summaries = {r.label: summarise_run(r) for r in runs}
    group_summaries = [summarise_group(g, summaries) for g in groups]
    budget = budget_rows(groups, summaries)
    notes = [n for r in runs for n in r.notes]
    for note in notes:
        print(f"saferl: warning: {note}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices in plots of partial runs
        sections = build_sections(runs, groups, summaries, group_summaries, budget, video)
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    for section in sections:
        for block in section.blocks:
            if isinstance(block, Image) and not block.name.endswith(".gif"):
                atomic_write_bytes(files / block.name, block.data)
    report = {"generated": generated, "runs": list(summaries.values()),
              "comparison": [g["row"] for g in group_summaries],
              "groups": [{"label": group_label(g, groups), "runs": [r.label for r in g], "curves": s["curves"]}
                         for g, s in zip(groups, group_summaries, strict=True)],
              "budget": budget, "warnings": notes}
    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["json"], json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["md"], to_markdown(sections, notes, generated))
    atomic_write_text(paths["html"], to_html(sections, notes, generated))
    return {**paths, "warnings": notes}
