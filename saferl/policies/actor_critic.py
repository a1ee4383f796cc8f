"""Actor and critics of K independent members: Gaussian actor with state-independent log-std, reward critic,
cost critic (one head per constraint), and the observation normaliser, saved together as one module.

Every tensor carries the member axis first, so one forward evaluates all members; a one-member module (K = 1)
is what a run directory's checkpoint holds and what eval, export and fine-tuning load (`member_state_dict`
cuts member k out of a K-member module, `load_member_state_dict` puts it back).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from saferl.maths import gaussian
from saferl.policies.ensemble import EnsembleMLP, Layers, can_stack, mlp_forward, stack_layers
from saferl.policies.normalizer import RunningNormalizer


class ActorCritic(nn.Module):
    def __init__(
        self,
        members: int,
        obs_dim: int,
        act_dim: int,
        num_costs: int = 1,
        actor_hidden=(64, 64),
        critic_hidden=(64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
        normalize_obs: bool = True,
        obs_clip: float = 10.0,
        observation_keys: list[tuple[str, int]] | None = None,
        generators: list[torch.Generator] | None = None,
        init: str = "orthogonal",
    ):
        super().__init__()
        self.members, self.obs_dim, self.act_dim, self.num_costs = members, obs_dim, act_dim, num_costs
        self.normalize_obs = normalize_obs
        # Dict observation spaces are flattened in this key order (gymnasium.spaces.flatten's); None for a Box.
        self.observation_keys = [(str(k), int(n)) for k, n in observation_keys] if observation_keys else None
        self.normalizer = RunningNormalizer(members, obs_dim, clip=obs_clip)
        self.normalizer.frozen = not normalize_obs
        # Initialised network by network, member k from generators[k] only (see EnsembleMLP).
        self.actor = EnsembleMLP(members, obs_dim, tuple(actor_hidden), act_dim, activation, 0.01, generators, init)
        self.log_std = nn.Parameter(torch.full((members, act_dim), float(init_log_std)))
        self.reward_critic = EnsembleMLP(members, obs_dim, tuple(critic_hidden), 1, activation, 1.0, generators, init)
        self.cost_critic = EnsembleMLP(members, obs_dim, tuple(critic_hidden), num_costs, activation, 1.0, generators,
                                       init)
        self._stackable: dict[bool, bool] | None = None  # the shapes never change: checked once

    # -- parameters by job -------------------------------------------------------------------------------
    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.actor.parameters(), self.log_std]

    def critic_parameters(self, cost: bool = True) -> list[nn.Parameter]:
        return [*self.reward_critic.parameters(), *(self.cost_critic.parameters() if cost else ())]

    # -- forward -------------------------------------------------------------------------------------------
    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations [K, B, D] on member k's scale (the normaliser is only read here, never updated)."""
        return self.normalizer(obs) if self.normalize_obs else obs

    def networks(self, with_cost: bool = True) -> list[EnsembleMLP]:
        return [self.actor, self.reward_critic, *([self.cost_critic] if with_cost else [])]

    def stacked_layers(self, with_cost: bool = True) -> Layers | None:
        """Actor and critics as one network of 2K or 3K members (differentiable); None when their hidden shapes
        differ, and then `forward_heads` runs them one by one."""
        if self._stackable is None:
            self._stackable = {cost: can_stack(self.networks(cost)) for cost in (False, True)}
        return stack_layers(self.networks(with_cost)) if self._stackable[with_cost] else None

    def forward_heads(self, x: torch.Tensor, with_cost: bool = True, layers: Layers | None = None):
        """Actor mean [K, B, A], reward value [K, B] and cost values [K, B, C] (None without the cost critic) of
        normalised observations, the networks run as one (`stacked_layers`, or pass a snapshot of them)."""
        if layers is None:
            layers = self.stacked_layers(with_cost)
        if layers is None:
            return self.actor(x), self.reward_critic(x).squeeze(-1), self.cost_critic(x) if with_cost else None
        k, count = self.members, 3 if with_cost else 2
        out = mlp_forward(layers, x.repeat(count, 1, 1), self.actor.activation)
        cost_values = out[2 * k :, :, : self.num_costs] if with_cost else None
        return out[:k, :, : self.act_dim], out[k : 2 * k, :, 0], cost_values

    def values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward value [K, B] and cost values [K, B, C] of normalised observations."""
        return self.reward_critic(x).squeeze(-1), self.cost_critic(x)

    def log_std_per_member(self) -> torch.Tensor:
        """[K, 1, A]: broadcasts against means [K, B, A]."""
        return self.log_std.unsqueeze(1)

    def sample(self, mean: torch.Tensor, generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions mean + std * noise and their log-probs; member k's noise comes from generators[k] alone."""
        noise = torch.empty_like(mean)
        for member, generator in enumerate(generators):
            torch.randn(mean.shape[1:], generator=generator, out=noise[member])
        log_std = self.log_std_per_member().detach()
        return mean + noise * log_std.exp(), gaussian.log_prob_of_noise(noise, log_std)

    # -- deployment ------------------------------------------------------------------------------------------
    def flatten_observation(self, obs) -> np.ndarray:
        """A Dict observation (one, or a batch as a dict of arrays) flattened in `observation_keys` order."""
        if not isinstance(obs, dict):
            return np.asarray(obs, dtype=np.float64)
        if self.observation_keys is None:
            raise ValueError("this policy was trained on flat observations; got a dict")
        parts = [np.asarray(obs[key], dtype=np.float64).reshape(-1, size) for key, size in self.observation_keys]
        flat = np.concatenate(parts, axis=-1)
        return flat[0] if np.ndim(obs[self.observation_keys[0][0]]) <= 1 else flat

    @torch.inference_mode()
    def predict(self, obs, deterministic: bool = True, member: int = 0) -> np.ndarray:
        """Raw observation(s) in ([D], [N, D] or a Dict), action(s) out: what an evaluation or deployment script
        calls. Stochastic actions use torch's global RNG."""
        flat = torch.as_tensor(self.flatten_observation(obs), dtype=torch.float32)
        single = flat.ndim == 1
        flat = flat.reshape(1, -1, self.obs_dim)
        x = self.normalise(flat.expand(self.members, -1, -1))[member : member + 1]
        mean = mlp_forward([(w[member : member + 1], b[member : member + 1]) for w, b in self.actor.layers()], x,
                           self.actor.activation)[0]
        action = mean if deterministic else mean + torch.randn_like(mean) * self.log_std[member].exp()
        action = action.numpy()
        return action[0] if single else action

    # -- members -------------------------------------------------------------------------------------------
    def member_state_dict(self, member: int) -> dict:
        """Member k as the state of a one-member module (what a member's run directory saves)."""
        return {key: value[member : member + 1].clone() if isinstance(value, torch.Tensor) else value
                for key, value in self.state_dict().items()}

    def load_member_state_dict(self, member: int, state: dict) -> None:
        """Overwrite member k with a one-member state (from `member_state_dict` or a run's checkpoint)."""
        own = self.state_dict()
        missing = set(own) - set(state)
        if missing:
            raise KeyError(f"missing {sorted(missing)[0]}")
        with torch.no_grad():
            for key, value in own.items():
                if isinstance(value, torch.Tensor):
                    if tuple(state[key].shape) != (1, *value.shape[1:]):
                        raise RuntimeError(f"{key}: shape {tuple(state[key].shape)} does not fit {tuple(value.shape)}")
                    value[member : member + 1].copy_(state[key])
        self.set_extra_state(state.get("_extra_state", self.get_extra_state()))

    def get_extra_state(self) -> dict:
        return {"observation_keys": self.observation_keys}

    def set_extra_state(self, state) -> None:
        keys = (state or {}).get("observation_keys")
        self.observation_keys = [(str(k), int(n)) for k, n in keys] if keys else None
