"""saferl: safe (constrained) reinforcement learning for robot control."""

__version__ = "0.1.0"
