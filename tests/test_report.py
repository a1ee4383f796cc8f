"""`saferl report`: statistics against hand-computed answers, seed aggregation, damaged inputs, the page itself."""

import ctypes.util
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import yaml
from conftest import QUICK, TOY_SETS_WITHOUT_STEPS

from saferl.cli import main
from saferl.errors import SafeRLError
from saferl.logger import read_progress
from saferl.report import build_report
from saferl.report.figures import draw_curves, reference_in_view, steps_text
from saferl.report.stats import (
    band,
    cvar,
    final_mean,
    first_safe_epoch,
    safety_regret,
    training_stats,
    verdict,
    violation_stats,
)

# Epoch costs against a limit of 25: epochs 1 and 3 are over (by 5 and 1), from epoch 4 on the run is safe.
COSTS = [30.0, 20.0, 26.0, 24.0, 10.0, 5.0]
HEADER = "epoch,env_steps,ep_return,ep_cost,ep_length,lagrange_multiplier,cost_limit,total_violations"


def synthetic_run(path, cut_last_row=False, header=HEADER, rows=None, seed=3):
    """A run directory without a checkpoint: config.yaml and a hand-written progress.csv."""
    path.mkdir(parents=True)
    config = {"env": {"id": "SafetyToyVelocity-v0"}, "train": {"algo": "ppo_lag", "seed": seed},
              "lagrange": {"cost_limit": 25.0}}  # where runs before env.cost_limit kept it
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    if rows is None:
        total = np.cumsum([c * 20 for c in COSTS])
        rows = [f"{e + 1},{1000 * (e + 1)},{e + 1.5},{c},50,{0.1 * e},25,{t:.0f}"
                for e, (c, t) in enumerate(zip(COSTS, total, strict=True))]
    text = header + "\n" + "\n".join(rows) + "\n"
    if cut_last_row:
        text = text[: text.rindex(",") - 2]  # the writer was killed mid-row
    (path / "progress.csv").write_text(text)
    return path


# -- pure statistics -------------------------------------------------------------------------------


def test_cvar_is_the_mean_of_the_worst_tail():
    assert cvar(range(1, 11)) == 10.0  # 10% of 10 episodes: the single worst
    assert cvar(range(1, 21)) == 19.5  # the worst 2 of 20
    assert cvar([3.0, np.nan, 1.0]) == 3.0
    assert cvar([1, 2, 3, 4], alpha=0.5) == 3.5
    assert np.isnan(cvar([]))


def test_violation_stats_known_answer():
    stats = violation_stats([0, 10, 30, 26, 25], limit=25)
    assert stats["episodes"] == 5 and stats["over_limit"] == 2 and stats["share_over_limit"] == 0.4
    assert stats["worst"] == 30 and stats["cvar90"] == 30 and stats["total"] == 91
    assert stats["mean"] == pytest.approx(18.2)
    assert violation_stats([], 25)["episodes"] == 0
    assert violation_stats([1, 2], None)["share_over_limit"] is None


def test_first_safe_epoch_and_regret():
    assert first_safe_epoch(COSTS, 25) == 4
    assert first_safe_epoch(COSTS, 25, epochs=[10, 20, 30, 40, 50, 60]) == 40
    assert first_safe_epoch([30, 5, 40], 25) is None  # over the limit at the end
    assert first_safe_epoch([1, 2], 25) == 1
    assert first_safe_epoch([np.nan, 30, np.nan, 3], 25) == 4  # unlogged epochs neither break nor start
    assert first_safe_epoch([30, np.nan], 25) is None
    assert safety_regret(COSTS, 25) == 6.0
    stats = training_stats(COSTS, 25)
    assert stats == {"epochs_logged": 6, "final": 5.0, "worst_epoch": 30.0, "epochs_over_limit": 2,
                     "share_epochs_over_limit": 2 / 6, "regret": 6.0, "first_safe_epoch": 4}


def test_band_aligns_seeds_on_a_common_grid():
    curve = band([[1, 2, 3], [1, 2, 3, 4]], [[0, 2, 4], [2, 2, 2, 9]])
    assert curve["x"] == [1, 2, 3] and curve["n"] == 2  # only the range every run covers
    assert curve["mean"] == [1, 2, 3] and curve["min"] == [0, 2, 2] and curve["max"] == [2, 2, 4]


def test_verdict_and_final_mean():
    assert verdict([10.0, 3.0], [25.0, 2.0]) == "over limit" and verdict([10.0], [25.0]) == "meets limit"
    assert verdict([np.nan], [25.0]) == "unknown" and verdict([1.0], [None]) == "no limit"
    assert final_mean([1, 2, 3, 4, 5, 6, np.nan]) == 4.0 and final_mean([7.0], rows=5) == 7.0
    assert np.isnan(final_mean([]))


def test_env_step_ticks_are_short():
    assert [steps_text(x) for x in (0, 500, 50_000, 100_000, 1_500_000, 2e6)] == ["0", "500", "50k", "100k",
                                                                                  "1.5M", "2M"]
    series = {"label": "a", "color": "C0", "x": [0, 2_000_000], "mean": [0, 1], "min": [0, 1], "max": [0, 1],
              "n": 1}
    fig = draw_curves([{"title": "return", "series": [series]},
                       {"title": "loss", "xlabel": "epoch", "series": [{**series, "x": [0, 5]}]}])
    fig.canvas.draw()
    steps_axis, epoch_axis = fig.axes
    lo, hi = steps_axis.get_xlim()
    ticks = [t for t in steps_axis.get_xticks() if lo <= t <= hi]
    labels = steps_axis.xaxis.get_major_formatter().format_ticks(ticks)
    assert labels == ["0", "500k", "1M", "1.5M", "2M"]  # not 0, 500000, ..., 2000000 running into each other
    assert epoch_axis.xaxis.get_major_formatter().format_ticks([1000]) != ["1k"]  # epochs keep plain ticks


# -- damaged or partial run directories ------------------------------------------------------------


def test_report_on_synthetic_progress_file(tmp_path):
    run = synthetic_run(tmp_path / "run")
    result = build_report([run], eval_episodes=0)
    assert result["html"] == run / "report.html" and result["warnings"] == []
    report = json.loads((run / "report.json").read_text())
    summary = report["runs"][0]
    training = summary["training"]
    assert training["constraints"]["cost"]["first_safe_epoch"] == 4
    assert training["constraints"]["cost"]["regret"] == 6.0
    assert training["cumulative_cost"] == 20 * sum(COSTS)
    assert summary["evaluation"] is None and "no eval.json" in summary["evaluation_note"]
    row = report["comparison"][0]
    assert row["seeds"] == 1 and row["return"]["mean"] == 6.5 and row["costs"]["cost"]["mean"] == 5.0
    assert row["verdict"] == "meets limit" and row["source"].startswith("training")
    assert (run / "report_files" / "curves.png").exists()
    markdown = (run / "report.md").read_text()
    assert "![learning curves](report_files/curves.png)" in markdown and "| 2/6 (33%) | 4 | 6.00 |" in markdown


@pytest.mark.slow
def test_truncated_progress_reports_complete_rows_and_warns(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run", cut_last_row=True)
    notes = []
    rows = read_progress(run / "progress.csv", notes)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5"] and len(notes) == 1 and "cut mid-row" in notes[0]
    with pytest.warns(UserWarning, match="cut mid-row"):
        assert len(read_progress(run / "progress.csv")) == 5
    code = main(["report", str(run), "--eval-episodes", "0"])
    assert code == 0
    assert "saferl: warning:" in capsys.readouterr().err
    report = json.loads((run / "report.json").read_text())
    assert report["runs"][0]["rows_read"] == 5 and "cut mid-row" in report["warnings"][0]
    assert "cut mid-row" in (run / "report.html").read_text()
    assert "cut mid-row" in (run / "report.md").read_text()


def test_progress_reader_skips_and_reports_malformed_rows(tmp_path):
    path = tmp_path / "progress.csv"
    path.write_text("epoch,phase,ep_return\n1,warmup,2.5\n2,finetune\n3,finetune,\n")
    notes = []
    rows = read_progress(path, notes)
    assert rows == [{"epoch": "1", "phase": "warmup", "ep_return": "2.5"},
                    {"epoch": "3", "phase": "finetune", "ep_return": ""}]
    assert notes == [f"{path}: skipped 1 malformed row(s) with the wrong number of fields"]
    path.write_text("")
    assert read_progress(path, notes) == [] and notes[-1] == f"{path} is empty"


def test_run_without_returns_or_costs_still_reports(tmp_path):
    """A behaviour-cloning run logs losses only; the report shows what exists and says what is missing."""
    run = synthetic_run(tmp_path / "bc", header="epoch,env_steps,bc_loss,lagrange_multiplier",
                        rows=["1,100,0.9,", "2,200,0.5,"])
    build_report([run], eval_episodes=3)
    report = json.loads((run / "report.json").read_text())
    assert report["runs"][0]["rows_read"] == 2
    assert report["comparison"][0]["verdict"] == "unknown"
    assert "no checkpoint" in report["runs"][0]["evaluation_note"]


def test_not_a_run_directory_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SafeRLError, match="is not a run directory"):
        build_report([tmp_path / "empty"])
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory" in err and err.count("\n") == 1
    assert main(["report", str(synthetic_run(tmp_path / "r")), "--eval-episodes", "-1"]) == 2


def budget_member(path, limit, seed, returns, cost, log_limit=True):
    """One seed of a multi-seed, multi-budget run: env.cost_limit in config.yaml, six logged epochs."""
    path.mkdir(parents=True)
    config = {"env": {"id": "SafetyToyVelocity-v0", "cost_limit": limit}, "train": {"algo": "ppo_lag", "seed": seed}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    header = "epoch,env_steps,ep_return,ep_cost" + (",cost_limit" if log_limit else "")
    rows = [f"{e + 1},{50_000 * (e + 1)},{r},{cost}" + (f",{limit}" if log_limit else "")
            for e, r in enumerate(returns)]
    (path / "progress.csv").write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.slow
def test_runs_at_different_cost_limits_are_compared_not_averaged(tmp_path):
    runs = [budget_member(tmp_path / "L10" / "seed-0", 10.0, 0, range(1, 7), 8),
            budget_member(tmp_path / "L10" / "seed-1", 10.0, 1, range(3, 9), 12),
            budget_member(tmp_path / "L25" / "seed-0", 25, 0, range(5, 11), 20),
            budget_member(tmp_path / "L25" / "seed-1", 25, 1, range(7, 13), 30, log_limit=False)]
    result = build_report(runs, out=tmp_path / "out", eval_episodes=0)
    report = json.loads(result["json"].read_text())
    assert [r["label"] for r in report["runs"]] == ["ppo_lag s0 limit 10", "ppo_lag s1 limit 10",
                                                    "ppo_lag s0 limit 25", "ppo_lag s1 limit 25"]
    assert [(row["cost_limit"], row["seeds"]) for row in report["comparison"]] == [(10.0, 2), (25.0, 2)]
    low, high = report["budget"]
    assert low["cost_limit"] == 10 and high["cost_limit"] == 25 and low["final_rows"] == 5
    assert low["train_return"] == {"mean": 5.0, "std": 1.0} and low["train_cost"] == {"mean": 10.0, "std": 2.0}
    assert high["train_return"]["mean"] == 9.0 and high["train_cost"]["mean"] == 25.0
    assert low["eval_return"] is None  # no evaluation episodes
    assert (tmp_path / "out" / "report_files" / "budget.png").stat().st_size > 10_000
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## 5. Return versus budget" in markdown and "![final return and cost" in markdown
    assert "| ppo_lag | SafetyToyVelocity-v0 | 25 | 2 | 9.0 ± 1.0 | 25.00 ± 5.00 | – | – |" in markdown
    assert "(limit 10)" in json.dumps(report["groups"])
    one_limit = build_report(runs[:2], out=tmp_path / "one", eval_episodes=0)
    assert json.loads(one_limit["json"].read_text())["budget"] == []
    assert "Return versus budget" not in one_limit["md"].read_text()


def test_a_multi_seed_parent_directory_gets_a_hint(tmp_path):
    budget_member(tmp_path / "D" / "seed-0", 10.0, 0, [1.0], 0)
    with pytest.raises(SafeRLError, match=r"holds runs: pass them, e.g. .*D/\*/"):
        build_report([tmp_path / "D"])


# -- real toy runs ---------------------------------------------------------------------------------


def train(run_dir, sets, *flags):
    assert main(["train", "--algo", "ppo_lag", "--run-dir", str(run_dir), *flags, "--set", *sets]) == 0


@pytest.fixture(scope="module")
def two_seed_report(tmp_path_factory):
    """Two seeds of PPO-Lag on the toy task, trained together (D/seed-0, D/seed-1), and the report over both."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    train(root / "D", [*TOY_SETS_WITHOUT_STEPS, "train.total_steps=6000"],
          "--seeds", "0,1")
    runs = sorted(map(str, root.glob("D/seed-*")))
    assert main(["report", *runs, "--out", str(root / "out"), "--eval-episodes", "4"]) == 0
    return root / "out"


@pytest.mark.slow
def test_two_seeds_are_aggregated(two_seed_report):
    report = json.loads((two_seed_report / "report.json").read_text())
    assert len(report["runs"]) == 2 and len(report["comparison"]) == 1 and report["budget"] == []
    assert [r["label"] for r in report["runs"]] == ["ppo_lag s0", "ppo_lag s1"]  # seed-<s> folders, short labels
    row = report["comparison"][0]
    assert row["seeds"] == 2 and row["source"] == "evaluation" and row["verdict"] in ("meets limit", "over limit")
    curve = report["groups"][0]["curves"]["ep_return"]
    assert curve["n"] == 2 and len(curve["x"]) == 3
    low, mean, high = map(np.array, (curve["min"], curve["mean"], curve["max"]))
    assert (low <= mean).all() and (mean <= high).all() and (low < high).any()  # a real band
    assert "lagrange_multiplier" in report["groups"][0]["curves"]
    for run in report["runs"]:
        evaluation = run["evaluation"]
        assert evaluation["episodes"] == 4 and evaluation["source"] == "rollouts"
        cost = evaluation["constraints"]["cost"]
        assert cost["cvar90"] == cost["worst"] and 0 <= cost["share_of_steps_with_cost"] <= 1
    page = (two_seed_report / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3  # curves + one evaluation figure per run
    assert "ppo_lag" in page and "± " in page
    assert "src='http" not in page and "<link" not in page and "<script" not in page  # opens offline


def find_chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)


@pytest.mark.slow
def test_page_renders_in_headless_chromium(two_seed_report, tmp_path):
    from PIL import Image

    browser = find_chromium()
    if browser is None:
        pytest.skip("chromium not found (apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    (two_seed_report / "report.html").resolve().as_uri()],
                   check=True, capture_output=True, timeout=90)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[:2] == (2000, 1200)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # plots, not a blank page
    assert (image < 250).any(axis=2).mean() > 0.05


@pytest.mark.slow
def test_video_unavailable_is_said_not_fatal(two_seed_report, tmp_path):
    run = two_seed_report.parent / "D" / "seed-0"
    result = build_report([run], out=tmp_path, eval_episodes=1, video=True)
    assert any("rendering is unavailable" in w for w in result["warnings"])
    assert "rendering is unavailable" in (tmp_path / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None and os.environ.get("MUJOCO_GL") != "egl",
                    reason="libosmesa6 not installed (or run with MUJOCO_GL=egl)")
def test_video_of_a_velocity_task(tmp_path):
    from PIL import Image

    sets = ["env.id=SafetyHalfCheetahVelocity-v1", "env.num_envs=2", "env.max_episode_steps=40",
            "train.total_steps=160", "train.steps_per_epoch=80", *QUICK, "env.cost_limit=1"]
    run = tmp_path / "cheetah"
    train(run, sets)
    result = build_report([run], eval_episodes=2, video=True)
    report = json.loads(result["json"].read_text())
    video = report["runs"][0]["video"]
    assert video["ok"], video
    gif = Image.open(video["path"])
    assert gif.n_frames == video["frames"] == 40 and video["steps"] == 40
    velocity = report["runs"][0]["evaluation"]["velocity"]  # velocity tasks report v and its threshold
    assert velocity["threshold"] == pytest.approx(3.2096) and 0 <= velocity["share_of_steps_over_threshold"] <= 1
    page = result["html"].read_text()
    assert "data:image/gif;base64," in page and "rendering is unavailable" not in page
    assert "no velocity histogram" not in page


def test_omnisafe_stars_are_drawn_only_beside_a_budget_near_theirs():
    """A 1e6-step grid's curves were squeezed into a tenth of the axis by OmniSafe's 1e7-step stars (the group
    estimators' figures); the 1e7 campaign keeps them, in progress or finished."""
    from saferl.benchmark_results import omnisafe_entry

    reference = omnisafe_entry("SafetyPointGoal1-v0", "ppo_lag")
    assert reference["steps"] == 10_000_000
    assert reference_in_view(reference, 10_000_000)
    assert not reference_in_view(reference, 1_000_000)
    assert not reference_in_view(None, 10_000_000)
