"""Figures for `saferl report`: learning curves, where violations happen, and return versus budget.

Figures use matplotlib's object API (no pyplot, so no global backend or state) and come back as PNG bytes
that the report embeds.
"""

from __future__ import annotations

import io
import math

import numpy as np

from saferl.report.stats import cvar

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
LIMIT_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.2}
DPI = 90
STEPS_LABEL = "env steps"


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def to_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _grid(n: int, ncols: int = 3, width: float = 5.0, height: float = 3.3):
    from matplotlib.figure import Figure

    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def steps_text(x: float, _position=None) -> str:
    """An env-step count as a short tick label: 50000 -> 50k, 1500000 -> 1.5M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def steps_axis(axis) -> None:
    """Few, short ticks on an env-steps axis: full step counts (200000, 400000, ...) run into each other."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=True))
    axis.set_major_formatter(FuncFormatter(steps_text))


def curves_figure(panels: list[dict]) -> bytes | None:
    fig = draw_curves(panels)
    return None if fig is None else to_png(fig)


def draw_curves(panels: list[dict]):
    """Learning curves, one panel per quantity. A panel: title, ylabel, xlabel (default env steps), limits
    [(value, label, colour or None for black)], series [{label, color, x, mean, min, max, n}]; a series of
    several seeds gets its min-max band."""
    panels = [p for p in panels if p["series"]]
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        for s in panel["series"]:
            label = s["label"] + (f" (mean of {s['n']}, band min-max)" if s["n"] > 1 else "")
            ax.plot(s["x"], s["mean"], color=s["color"], linestyle=s.get("linestyle", "-"), label=label)
            if s["n"] > 1:
                ax.fill_between(s["x"], s["min"], s["max"], color=s["color"], alpha=0.2, linewidth=0)
        for value, label, line_color in panel.get("limits", []):
            ax.axhline(value, label=label, **{**LIMIT_STYLE, "color": line_color or LIMIT_STYLE["color"]})
        ax.set_title(panel["title"], fontsize=10)
        xlabel = panel.get("xlabel", STEPS_LABEL)
        ax.set_xlabel(xlabel)
        if xlabel == STEPS_LABEL:
            steps_axis(ax.xaxis)
        ax.set_ylabel(panel.get("ylabel", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def budget_figure(rows: list[dict]) -> bytes:
    """Final return and final cost against the cost limit, one line per algorithm x env (mean and std over
    seeds; solid: training, dashed: evaluation), and cost = limit on the cost panel."""
    fig, (ret_ax, cost_ax) = _grid(2, ncols=2, width=5.5, height=3.6)
    tasks = list(dict.fromkeys((r["algo"], r["env_id"]) for r in rows))
    several_envs = len({env for _, env in tasks}) > 1
    for i, task in enumerate(tasks):
        mine = [r for r in rows if (r["algo"], r["env_id"]) == task]
        limits = [r["cost_limit"] for r in mine]
        name = task[0] + (f" · {task[1]}" if several_envs else "")
        for ax, key in ((ret_ax, "return"), (cost_ax, "cost")):
            for source, style, marker in (("train", "-", "o"), ("eval", "--", "s")):
                if any(r[f"{source}_{key}"] is None for r in mine):
                    continue
                means = [r[f"{source}_{key}"]["mean"] for r in mine]
                stds = [r[f"{source}_{key}"]["std"] for r in mine]
                label = f"{name} ({'training, last epochs' if source == 'train' else 'evaluation'})"
                ax.errorbar(limits, means, yerr=stds, color=color(i), linestyle=style, marker=marker, capsize=3,
                            label=label)
    every_limit = sorted({r["cost_limit"] for r in rows})
    cost_ax.plot(every_limit, every_limit, label="cost = limit", **LIMIT_STYLE)
    for ax, title in ((ret_ax, "final return against the cost limit"), (cost_ax, "final cost against the cost limit")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("cost limit")
        ax.set_ylabel(title.split()[1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def evaluation_figure(evaluation: dict, limits: list, title: str) -> bytes:
    """Where violations happen in the evaluation episodes: the episode-cost distribution against the limit,
    a raster of episodes x steps (share of steps with cost per bin), each episode's cumulative cost against
    the limit, and the velocity histogram against the threshold when the env reports velocities."""
    costs = np.asarray(evaluation["costs"], float)
    names = evaluation["cost_names"]
    step_costs = evaluation["step_costs"]
    kinds = ["distribution"] + (["raster"] + [f"cumulative:{k}" for k in range(len(names))] if step_costs else [])
    if evaluation["velocities"]:
        kinds.append("velocity")
    fig, axes = _grid(len(kinds), ncols=min(4, len(kinds)), width=4.2, height=3.1)
    fig.suptitle(title, fontsize=11)
    for ax, kind in zip(axes, kinds, strict=True):
        if kind == "distribution":
            _cost_histogram(ax, costs, names, limits)
        elif kind == "raster":
            _raster(ax, step_costs, len(names))
        elif kind.startswith("cumulative:"):
            k = int(kind.split(":")[1])
            _cumulative(ax, step_costs, k, names[k], limits[k])
        else:
            _velocity(ax, np.concatenate(evaluation["velocities"]), evaluation.get("velocity_threshold"))
    return to_png(fig)


def _cost_histogram(ax, costs, names, limits) -> None:
    for k, name in enumerate(names):
        ax.hist(costs[:, k], bins=min(20, max(5, len(costs))), color=color(k), alpha=0.6, label=name)
    for k, limit in enumerate(limits):
        if limit is not None and (k == 0 or limit != limits[0]):
            ax.axvline(limit, label="cost limit", **LIMIT_STYLE)
    if len(names) == 1:
        ax.axvline(cvar(costs[:, 0]), color=color(1), linestyle=":", linewidth=1.5, label="CVaR 90%")
    ax.set_title(f"episode cost ({len(costs)} episodes)", fontsize=10)
    ax.set_xlabel("episode cost")
    ax.set_ylabel("episodes")
    ax.legend(fontsize=7)


def _raster(ax, step_costs, num_costs: int) -> None:
    longest = max(len(c) for c in step_costs)
    width = max(1, math.ceil(longest / 200))  # bin steps so single costly steps stay visible
    bins = math.ceil(longest / width)
    grid = np.full((len(step_costs), bins), np.nan)
    for e, costs in enumerate(step_costs):
        hit = (np.asarray(costs, float) > 0).any(axis=1).astype(float)
        pad = np.full(bins * width, np.nan)
        pad[:hit.size] = hit
        with np.errstate(invalid="ignore"):
            grid[e] = np.nanmean(pad.reshape(bins, width), axis=1) if width > 1 else pad
    import matplotlib
    import matplotlib.ticker

    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest", extent=(0, bins * width, len(step_costs) + 0.5, 0.5))
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.figure.colorbar(image, ax=ax, label="share of steps with cost" if width > 1 else "cost > 0")
    ax.set_title("when costs occur" + (" (any constraint)" if num_costs > 1 else ""), fontsize=10)
    ax.set_xlabel("step in episode")
    ax.set_ylabel("episode")


def _cumulative(ax, step_costs, k: int, name: str, limit) -> None:
    for e, costs in enumerate(step_costs):
        c = np.cumsum(np.asarray(costs, float)[:, k])
        ax.plot(np.arange(1, c.size + 1), c, color=color(e), alpha=0.7, linewidth=1)
    if limit is not None:
        ax.axhline(limit, label="cost limit", **LIMIT_STYLE)
        ax.legend(fontsize=7)
    ax.set_title(f"cumulative {name} within each episode", fontsize=10)
    ax.set_xlabel("step in episode")
    ax.set_ylabel(f"cumulative {name}")


def _velocity(ax, velocities, threshold) -> None:
    ax.hist(velocities, bins=60, color=color(0), alpha=0.8)
    title = "velocity"
    if threshold is not None:
        ax.axvline(threshold, color="red", linewidth=1.5, label=f"threshold {threshold:g}")
        title += f": {100 * float((velocities > threshold).mean()):.2f}% of steps over threshold"
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("velocity")
    ax.set_ylabel("steps")


def reference_in_view(reference: dict | None, budget: float) -> bool:
    """Whether a peer's final numbers belong on curves trained for `budget` steps: OmniSafe's 1e7-step stars beside
    a 1e6-step grid would squeeze its curves into a tenth of the axis, and compare numbers of different budgets."""
    return bool(reference) and budget >= 0.5 * reference["steps"]


def benchmark_curves_figure(env_id: str, cells: list[tuple[str, dict]]) -> bytes:
    """Two panels for one task of a benchmark grid: windowed return and cost against env steps, one line per cell
    (mean over seeds, min-max band), the cost limit dashed, OmniSafe's final (1e7-step) numbers as stars where the
    cell's budget comes near theirs (`reference_in_view`)."""
    fig, (ret_ax, cost_ax) = _grid(2, ncols=2, width=6.0, height=3.8)
    limits = set()
    stars = False
    for index, (name, cell) in enumerate(cells):
        curves = [s["curve"] for s in cell["per_seed"] if s.get("curve") and s["curve"]["env_steps"]]
        if not curves:
            continue
        length = min(len(c["env_steps"]) for c in curves)
        steps = np.asarray(curves[0]["env_steps"][:length], dtype=float)
        for ax, key in ((ret_ax, "ep_return"), (cost_ax, "ep_cost")):
            values = np.array([c[key][:length] for c in curves], dtype=float)
            ax.plot(steps, np.nanmean(values, axis=0), color=color(index), label=f"{name} ({len(curves)} seeds)")
            ax.fill_between(steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color(index),
                            alpha=0.15, linewidth=0)
        reference = cell.get("omnisafe")
        if reference_in_view(reference, cell.get("steps") or steps[-1]):
            stars = True
            for ax, key in ((ret_ax, "return"), (cost_ax, "cost")):
                ax.plot([reference["steps"]], [reference[key]], marker="*", markersize=11, color=color(index),
                        linestyle="none", markeredgecolor="black")
        limits.update(s.get("cost_limit") for s in cell["per_seed"] if s.get("cost_limit") is not None)
    for limit in limits:
        cost_ax.axhline(limit, **LIMIT_STYLE)
    for ax, label in ((ret_ax, "episode return (last 100)"), (cost_ax, "episode cost (last 100)")):
        ax.set_xlabel(STEPS_LABEL)
        ax.set_ylabel(label)
        steps_axis(ax.xaxis)
        ax.grid(alpha=0.3)
    ret_ax.set_title(f"{env_id}: return" + (" (stars: OmniSafe at 1e7)" if stars else ""))
    cost_ax.set_title(f"{env_id}: cost (dashed: limit)")
    ret_ax.legend(fontsize=7)
    return to_png(fig)
