"""`saferl report`: how often, how badly and where runs break their cost limit, in one offline page.

Reads run directories (config.yaml, progress.csv, the checkpoint, eval.json), rolls the saved policies out
for fresh evaluation episodes with per-step costs, and writes report.html (self-contained: images are
embedded), report.md and report.json. One job per module, imported in this order (no cycles):

- stats: pure statistics (CVaR, violation counts, regret, first safe epoch, seed bands);
- runs: reading run directories (Run, progress columns, eval.json, evaluation rollouts, labels, groups);
- summary: per-run and per-group summaries, return versus budget;
- figures: matplotlib figures; video: one episode as a GIF, rendered in a child process;
- render: the document model and its HTML/Markdown/JSON writers; sections: what the report says;
- build: `build_report`, the entry point.
"""

from saferl.report.build import build_report

__all__ = ["build_report"]
