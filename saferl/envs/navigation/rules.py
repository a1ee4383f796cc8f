"""Task rules: the reward, cost and goal logic of Goal, Button, Push and Circle, for a batch of envs.

A mixin of ``NavigationSim`` (it reads the simulator's ``sens`` rows and object table), kept
apart so the physics plumbing and Safety-Gymnasium 1.0.0's task semantics can be read separately.
Everything per step is a handful of array ops over the batch; only rare events (a goal reached,
a button re-chosen) touch single envs.
"""

from __future__ import annotations

import numpy as np

from . import tasks as T
from .layout import place_goal


class TaskRules:
    """Reward, cost and goal handling; expects the attributes ``NavigationSim.__init__`` sets."""

    def _cost_terms(self) -> None:
        """Precompute which cost checks this task needs (so ``_cost`` is a few array ops)."""
        spec, w = self.spec, self.world
        constrained = {g.kind: g for g in spec.groups if g.constrained}
        hazards = constrained.get("hazards")
        self._hazards = (self.slots["hazards"], hazards.size ** 2) if hazards else None
        touch = [w.touch[k] for k in ("vases", "pillars", "gremlins") if k in constrained]
        self._touch_cost = np.concatenate(touch) if touch else None
        self._button_cost = "buttons" in constrained
        self._speed_cost = w.speed["vases"] if "vases" in constrained else None
        self._walls = spec.level if spec.task == "Circle" else 0
        self._button_channel = spec.lidar_kinds.index("buttons") if "buttons" in spec.lidar_kinds else None

    def _reset_progress(self, i: int) -> None:
        """Distances the next step's progress reward is measured from."""
        if self._goal is None:
            return
        if self.spec.task == "Push":
            robot, box, goal = self._push_points(i)
            self.last_dist[i] = np.linalg.norm(box - goal)
            self.last_box_dist[i] = np.linalg.norm(robot - box)
        else:
            robot, goal = self.sens[i, self._pos][:2], self.obj[i, self._goal, :2]
            self.last_dist[i] = np.linalg.norm(robot - goal)

    def _push_points(self, idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Robot, box and goal centres in 3-D (rows ``idx``): Safety-Gymnasium's Push distances use full ``xpos``."""
        s = self.sens[idx]
        goal = np.concatenate([self.obj[idx, self._goal, :2], np.full(np.shape(s)[:-1] + (1,), T.GOAL_HEIGHT)], -1)
        return s[..., self._pos], s[..., self._box], goal

    def _choose_button(self, i: int) -> None:
        """Draw the goal button uniformly (after a press it may be the same one) and move the goal onto it."""
        self.goal_button[i] = self.rng(i).choice(self.spec.group("buttons").count)
        self._set_goal(i, self.obj[i, self.slots["buttons"].start + self.goal_button[i], :2])

    def _set_goal(self, i: int, xy: np.ndarray) -> None:
        """Move env i's goal: in the object table (reward, lidar) and its marker (rendering)."""
        self.obj[i, self._goal, :2] = xy
        self._mocap[i][self.world.mocap["goal"][0], :2] = xy

    def _place_new_goal(self, i: int) -> bool:
        """Re-place a reached goal clear of the robot and the objects where they are now (gremlins: their
        layout points), as Safety-Gymnasium does; False when no candidate fits (there the episode ends)."""
        placed, keepouts = [self.sens[i, self._pos][None, :2]], [[T.ROBOT_KEEPOUT]]
        for kind, slot in self.slots.items():
            if kind == "goal":
                continue
            placed.append(self.gremlin_centre[i] if kind == "gremlins" else self.obj[i, slot, :2])
            keepouts.append(self.slot_keepout[slot])
        xy = place_goal(self.rng(i), self.spec, np.concatenate(placed), np.concatenate(keepouts))
        if xy is None:
            return False
        self._set_goal(i, xy)
        return True

    def _cost(self, robot_xy: np.ndarray) -> np.ndarray:
        """1.0 where any constrained component is active (hazard, contact, vase motion, wall)."""
        s = self.sens
        active = np.zeros(self.num_envs, dtype=bool)
        if self._hazards is not None:
            slot, radius2 = self._hazards
            rel = self.obj[:, slot, :2] - robot_xy[:, None]
            active |= (np.einsum("nmi,nmi->nm", rel, rel) < radius2).any(axis=1)   # exactly at the radius: 0
        if self._touch_cost is not None:
            active |= (s[:, self._touch_cost] > 0).any(axis=1)
        if self._button_cost:  # off while the timer of a press runs (read before this step ticks it)
            touched = s[:, self.world.touch["buttons"]] > 0
            touched[np.arange(self.num_envs), self.goal_button] = False
            active |= touched.any(axis=1) & (self.button_timer == 0)
        if self._speed_cost is not None:
            v = s[:, self._speed_cost]
            active |= (np.sqrt(np.einsum("nmi,nmi->nm", v, v)) >= T.VASE_SPEED_LIMIT).any(axis=1)
        if self._walls:
            out = np.abs(robot_xy) > T.CIRCLE_WALL
            active |= out[:, 0] if self._walls == 1 else out.any(axis=1)
        return active.astype(np.float64)

    def _reward(self, robot_xy: np.ndarray) -> np.ndarray:
        task = self.spec.task
        if task == "Circle":
            reward = self._circle_reward(robot_xy)
        else:
            goal = self.obj[:, self._goal, :2]
            if task == "Push":
                robot, box, goal = self._push_points(slice(None))
                box_dist = np.linalg.norm(robot - box, axis=1)
                dist = np.linalg.norm(box - goal, axis=1)
                reward = (self.last_box_dist - box_dist) * T.DISTANCE_REWARD
                reward += (self.last_dist - dist) * T.DISTANCE_REWARD
                self.last_box_dist = box_dist
            else:
                dist = _norm(robot_xy - goal)
                reward = (self.last_dist - dist) * T.DISTANCE_REWARD
            self.last_dist = dist
            reached = self._button_step() if task == "Button" else dist <= T.GOAL_SIZE
            if reached.any():
                reward += reached * T.GOAL_REWARD
                if task != "Button":
                    for i in np.flatnonzero(reached):
                        self._place_new_goal(i)
                        self._reset_progress(i)
        return np.maximum(np.minimum(reward, T.REWARD_CLIP), -T.REWARD_CLIP)

    def _button_step(self) -> np.ndarray:
        """Presses of the goal button: each pays and draws the next goal button at once.

        A press also starts a ``BUTTON_RESAMPLE_DELAY``-step timer: while it runs the buttons lidar reads
        zero and touching a wrong button costs nothing. Touching the goal button pays on every step,
        timer or not, so a redraw of the same button pays again. Must run after ``_cost`` in a step.
        """
        np.maximum(self.button_timer - 1, 0, out=self.button_timer)
        touched = self.sens[:, self.world.touch["buttons"]] > 0
        pressed = touched[np.arange(self.num_envs), self.goal_button]
        for i in np.flatnonzero(pressed):
            self._choose_button(i)
            self._reset_progress(i)
        self.button_timer[pressed] = T.BUTTON_RESAMPLE_DELAY
        return pressed

    def _hide_buttons(self, lidar: np.ndarray, idx=None) -> None:
        """Zero the buttons lidar [N, kinds, bins] of the envs (rows ``idx``) whose press timer runs."""
        if self._button_channel is not None:
            timer = self.button_timer if idx is None else self.button_timer[idx]
            lidar[timer > 0, self._button_channel] = 0.0

    def _circle_reward(self, robot_xy: np.ndarray) -> np.ndarray:
        x, y = robot_xy[:, 0], robot_xy[:, 1]
        vel = self.sens[:, self.world.robot_vel]
        rho = np.maximum(np.hypot(x, y), 1e-9)
        return 0.1 * (-vel[:, 0] * y + vel[:, 1] * x) / rho / (1.0 + np.abs(rho - T.CIRCLE_RADIUS))


def _norm(v: np.ndarray) -> np.ndarray:
    """Lengths of 2-vectors [N, 2]."""
    return np.hypot(v[:, 0], v[:, 1])
