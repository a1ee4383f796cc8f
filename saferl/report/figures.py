"""Figures and the episode video for `saferl report`.

Figures use matplotlib's object API (no pyplot, so no global backend or state) and come back as PNG bytes
that the report embeds. The video is rendered in a child process: MuJoCo's offscreen GL backend is chosen
by environment variables at import time, and a GL failure (even a crash) must only cost the video.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
LIMIT_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.2}
DPI = 90


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


def curves_figure(panels: list[dict]) -> bytes | None:
    """Learning curves, one panel per quantity. A panel: title, ylabel, limits [(value, label)], series
    [{label, color, x, mean, min, max, n}]; a series of several seeds gets its min-max band."""
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
        for value, label in panel.get("limits", []):
            ax.axhline(value, label=label, **LIMIT_STYLE)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel.get("xlabel", "env steps"))
        ax.set_ylabel(panel.get("ylabel", ""))
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
    from saferl.report import cvar

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


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


def render_video(run_dir: Path, out: Path, env_id: str, deterministic: bool = False, timeout: float = 600.0) -> dict:
    """Render one evaluation episode to an animated GIF in a child process; {"ok": False, "reason"} on failure.

    MUJOCO_GL defaults to osmesa (software rendering, Debian's libosmesa6) unless the caller chose one.
    """
    from saferl.envs.toy import TOY_ID

    if env_id == TOY_ID:  # numpy-only test task: no child process needed to know there is nothing to draw
        return {"ok": False, "reason": f"{TOY_ID} is a numpy toy task without a renderer"}
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "osmesa")
    if env["MUJOCO_GL"] == "osmesa":
        env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "saferl.report.figures", "render", str(run_dir), str(out)]
    if deterministic:
        command.append("--deterministic")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"rendering took longer than {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    if done.returncode < 0:
        return {"ok": False, "reason": f"the renderer crashed (signal {-done.returncode}, MUJOCO_GL="
                                       f"{env['MUJOCO_GL']})"}
    tail = [line for line in done.stderr.splitlines() if line.strip()]
    return {"ok": False, "reason": (tail[-1] if tail else f"renderer exited with status {done.returncode}")[:300]}


def render_episode(run_dir: Path, out: Path, deterministic: bool = False, width: int = 320, height: int = 240,
                   max_frames: int = 200, frame_ms: int = 50) -> dict:
    """Run one episode of the saved policy in a single rgb_array env; frames after a costly step get a red
    border. Runs in the child process started by `render_video`."""
    import torch

    from saferl import envs
    from saferl.io import atomic_write_bytes
    from saferl.runner import load_policy

    config, policy, _ = load_policy(run_dir)
    kwargs = {"render_mode": "rgb_array", "width": width, "height": height}
    if config.env.max_episode_steps:
        kwargs["max_episode_steps"] = config.env.max_episode_steps
    try:
        env = envs.make_safe_env(config.env.id, **kwargs)
    except (ValueError, TypeError) as exc:
        return {"ok": False, "reason": f"{config.env.id} cannot be rendered ({str(exc).splitlines()[0]})"}
    horizon = getattr(env.spec, "max_episode_steps", None) or 1000
    stride = max(1, math.ceil(horizon / max_frames))
    seed = config.train.seed + 100_000
    torch.manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    frames, marked, window, total, step = [], 0, 0.0, 0.0, 0
    while True:
        action = np.clip(policy.predict(obs, deterministic=deterministic), low, high)
        obs, _, cost, terminated, truncated, _ = env.step(action)
        step += 1
        window += float(np.sum(cost))
        total += float(np.sum(cost))
        end = terminated or truncated or step >= horizon
        if step % stride == 0 or end:
            frames.append(_mark(env.render(), window > 0, step, total))
            marked += window > 0
            window = 0.0
        if end:
            break
    env.close()
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    atomic_write_bytes(out, buffer.getvalue())
    return {"ok": True, "path": str(out), "frames": len(frames), "frames_with_cost": int(marked),
            "steps": step, "steps_per_frame": stride, "episode_cost": total}


def _mark(frame: np.ndarray, costly: bool, step: int, total: float):
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    if costly:
        w, h = image.size
        draw.rectangle([0, 0, w - 1, h - 1], outline=(230, 0, 0), width=6)
    text = f"step {step}  cost {total:g}"
    left, top, right, bottom = draw.textbbox((10, 10), text)
    draw.rectangle([left - 3, top - 3, right + 3, bottom + 3], fill=(0, 0, 0))
    draw.text((10, 10), text, fill=(255, 90, 90) if costly else (255, 255, 255))
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saferl.report.figures")
    parser.add_argument("command", choices=["render"])
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = render_episode(Path(args.run_dir), Path(args.out), args.deterministic)
    except Exception as exc:  # report any GL/driver failure as a reason line; the report goes on without video
        result = {"ok": False, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
