"""One evaluation episode as an animated GIF for `saferl report --video`.

The episode is rendered in a child process: MuJoCo's offscreen GL backend is chosen by environment variables
at import time, and a GL failure (even a crash) must only cost the video, not the report.
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


def render_video(run_dir: Path, out: Path, env_id: str, deterministic: bool = False, timeout: float = 600.0) -> dict:
    """Render one evaluation episode to an animated GIF in a child process; {"ok": False, "reason"} on failure.

    MUJOCO_GL defaults to osmesa (software rendering, Debian's libosmesa6) unless the caller chose one.
    """
    from saferl.envs.toy import NOISY_TOY_ID, TOY_ID

    if env_id in (TOY_ID, NOISY_TOY_ID):  # numpy-only test tasks: nothing to draw, no child process needed
        return {"ok": False, "reason": f"{env_id} is a numpy toy task without a renderer"}
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "osmesa")
    if env["MUJOCO_GL"] == "osmesa":
        env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "saferl.report.video", "render", str(run_dir), str(out)]
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
    """The first of the run's evaluation episodes in one rgb_array env, every `stride`-th state drawn; frames
    that follow a costly step get a red border. Runs in the child process started by `render_video`."""
    from saferl.errors import SafeRLError
    from saferl.evaluation import evaluation_seed, make_eval_env, run_episodes
    from saferl.files import atomic_write_bytes
    from saferl.rundir import load_policy

    config, policy, _ = load_policy(run_dir)
    try:
        env = make_eval_env(config, 1, render_mode="rgb_array", width=width, height=height)
    except (SafeRLError, ValueError, TypeError) as exc:
        return {"ok": False, "reason": f"{config.env.id} cannot be rendered ({str(exc).splitlines()[0]})"}
    stride = max(1, math.ceil((env.max_episode_steps or 1000) / max_frames))
    shots = []  # (steps taken, frame): the state the policy acts in next

    def shoot(step: int) -> None:
        if step % stride == 0:
            shots.append((step, env.envs[0].render()))

    try:
        episode = run_episodes(policy, env, 1, deterministic, evaluation_seed(config.train.seed), record=True,
                               before_step=shoot)
    finally:
        env.close()
    step_costs = episode.steps[0]["costs"].sum(axis=1)
    frames, marked, previous = [], 0, 0
    for step, frame in shots:
        costly = step_costs[previous:step].sum() > 0  # a cost since the previous frame
        frames.append(_mark(frame, costly, step, float(step_costs[:step].sum())))
        marked += costly
        previous = step
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    atomic_write_bytes(out, buffer.getvalue())
    return {"ok": True, "path": str(out), "frames": len(frames), "frames_with_cost": int(marked),
            "steps": episode.lengths[0], "steps_per_frame": stride, "episode_cost": float(step_costs.sum())}


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
    parser = argparse.ArgumentParser(prog="python -m saferl.report.video")
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
