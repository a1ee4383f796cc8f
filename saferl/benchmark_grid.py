"""The grid file of `saferl benchmark` (docs in saferl/benchmark.py): read and checked down to each cell's config
before anything starts, so a typo fails in one line instead of hours into a queue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from saferl.errors import SafeRLError

GRID_KEYS = ("algos", "envs", "seeds", "steps", "set", "variants")
VARIANT_KEYS = ("name", "set", "algos")
GRID_OWNS = ("env.id", "train.total_steps", "train.seed")  # set by the grid's own keys, not by `set`


@dataclass
class Variant:
    name: str
    sets: list[str]
    algos: list[str] | None = None  # None: every algorithm of the grid


@dataclass
class Grid:
    algos: list[str]
    envs: list[str]
    seeds: list[int]
    steps: int
    sets: list[str]
    variants: list[Variant] | None = None

    def cells(self) -> list[tuple[str, str, Variant | None]]:
        """(env, algo, variant) in run order: env by env, then algorithm, then variant."""
        variants = self.variants or [None]
        return [(env, algo, variant) for env in self.envs for algo in self.algos for variant in variants
                if variant is None or variant.algos is None or algo in variant.algos]


def load_grid(path: Path) -> Grid:
    """The grid file, checked down to each algorithm's config, before anything starts."""
    from saferl.config import build_config, check_seed
    from saferl.envs import require_env
    from saferl.launch import split_cost_limits
    from saferl.training import check_algo

    path = Path(path)
    if not path.is_file():
        raise SafeRLError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SafeRLError(f"{path} is not UTF-8 text (a binary file?); a grid is a YAML file") from None
    except yaml.YAMLError as exc:
        raise SafeRLError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SafeRLError(f"{path} must hold a mapping with keys algos, envs, seeds, steps (and optional set)")
    unknown = sorted(set(data) - set(GRID_KEYS))
    missing = [key for key in GRID_KEYS[:4] if key not in data]
    if unknown or missing:
        what = f"unknown key '{unknown[0]}'" if unknown else f"missing key '{missing[0]}'"
        raise SafeRLError(f"{path}: {what}; a grid has keys {', '.join(GRID_KEYS)}")
    algos, env_ids, seeds, steps = (data[key] for key in GRID_KEYS[:4])
    sets = data.get("set") or []
    for key, value, kind in (("algos", algos, str), ("envs", env_ids, str), ("seeds", seeds, int),
                             ("set", sets, str)):
        if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise SafeRLError(f"{path}: '{key}' must be a list of {kind.__name__}s")
        if key != "set" and (not value or len(set(value)) != len(value)):
            raise SafeRLError(f"{path}: '{key}' must list at least one entry, none twice")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise SafeRLError(f"{path}: 'steps' must be an integer >= 1, got {steps!r}")
    for algo in algos:
        check_algo(algo, where=f"{path}: ")
    for seed in seeds:
        check_seed(seed, f"{path}: a seed")
    for item in sets:
        key = item.partition("=")[0].strip()
        if "=" not in item or key in GRID_OWNS:
            raise SafeRLError(f"{path}: set entry '{item}' must be key=value, and not one of {', '.join(GRID_OWNS)} "
                              "(the grid's envs, steps and seeds set those)")
    if split_cost_limits(sets)[1] is not None:
        raise SafeRLError(f"{path}: a cell trains seeds of one setting; use one grid per cost limit")
    for env_id in env_ids:
        require_env(env_id)
    variants = load_variants(path, data.get("variants"), algos)
    for algo in algos:
        for variant in variants or [None]:
            extra_sets = variant.sets if variant else []
            build_config(algo, sets=sets + extra_sets, extra={"env": {"id": env_ids[0]},
                                                              "train": {"total_steps": steps}})
    return Grid(algos, env_ids, seeds, steps, sets, variants)


def load_variants(path: Path, data, algos: list[str]) -> list[Variant] | None:
    """The grid's `variants` (None when it has none), each checked like the grid's own `set`."""
    if data is None:
        return None
    if not isinstance(data, list) or not data or not all(isinstance(v, dict) for v in data):
        raise SafeRLError(f"{path}: 'variants' must be a list of mappings with keys {', '.join(VARIANT_KEYS)}")
    variants = []
    for entry in data:
        unknown = sorted(set(entry) - set(VARIANT_KEYS))
        name, sets, only = entry.get("name"), entry.get("set") or [], entry.get("algos")
        if unknown or not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise SafeRLError(f"{path}: each variant needs a 'name' of letters, digits, '-' and '_' (and only keys "
                              f"{', '.join(VARIANT_KEYS)})")
        if not isinstance(sets, list) or not all(isinstance(item, str) and "=" in item for item in sets):
            raise SafeRLError(f"{path}: variant '{name}': 'set' must be a list of key=value")
        if any(item.partition("=")[0].strip() in GRID_OWNS for item in sets):
            raise SafeRLError(f"{path}: variant '{name}' sets one of {', '.join(GRID_OWNS)} (the grid's own keys)")
        if only is not None and (not isinstance(only, list) or not set(only) <= set(algos)):
            raise SafeRLError(f"{path}: variant '{name}': 'algos' must list algorithms of the grid")
        variants.append(Variant(name, sets, only))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SafeRLError(f"{path}: two variants are called the same")
    return variants
