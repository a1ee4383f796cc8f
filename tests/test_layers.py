"""The package's layers: the lower ones import nothing from above them (type-only imports included)."""

import ast
from pathlib import Path

import pytest

import saferl

PACKAGE = Path(saferl.__file__).parent
# What each layer may import from saferl: itself, the layers under it, and the error type.
ALLOWED = {
    "envs": ("saferl.envs", "saferl.errors"),
    "maths": ("saferl.maths", "saferl.errors"),
    "policies": ("saferl.policies", "saferl.maths", "saferl.errors"),
}


def import_statements(path: Path) -> list[tuple[str, list[str]]]:
    """Each import in a file as (the module it names, relative imports resolved; the names taken from it, [] for a
    plain `import`)."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                package = module[: len(module) - node.level]
                found.append((".".join(package + ((node.module,) if node.module else ())),
                              [alias.name for alias in node.names]))
            else:
                found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def saferl_imports(path: Path) -> set[str]:
    """The saferl modules a file imports, relative imports resolved."""
    return {name for name, _ in import_statements(path) if name and name.split(".")[0] == "saferl"}


def test_saferl_imports_resolves_relative_and_absolute_imports():
    sample = PACKAGE / "envs" / "fetch" / "demonstrators.py"
    assert saferl_imports(sample) == {"saferl.envs.fetch", "saferl.envs.fetch.layout"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_lower_layer_imports_nothing_above_it(layer):
    offending = {
        str(path.relative_to(PACKAGE)): sorted(name for name in saferl_imports(path)
                                              if not any(name == a or name.startswith(a + ".") for a in ALLOWED[layer]))
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def module_graph() -> dict[str, set[str]]:
    """saferl's modules and the saferl modules each imports (anywhere in the file, type-only imports included);
    `from package import name` counts the submodule when `name` is one, else the package."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        found = set()
        for base, names in import_statements(path):
            found.update([f"{base}.{n}" if f"{base}.{n}" in files else base for n in names] or [base])
        graph[name] = {module for module in found if module in files and module != name}
    return graph


def test_module_graph_resolves_submodule_and_package_imports():
    graph = module_graph()
    assert "saferl.envs.navigation.tasks" in graph["saferl.envs.navigation.sim"]  # from . import tasks as T
    assert "saferl.envs.fetch.layout" in graph["saferl.envs.fetch"]  # from .layout import MAX_EPISODE_STEPS
    assert "saferl.benchmark_grid" in graph["saferl.benchmark"]


def test_no_module_imports_itself_through_others():
    """No import cycle, lazy and type-only imports included: each module can be read after the ones it uses."""
    graph, state, cycles = module_graph(), {}, []

    def visit(module, path):
        state[module] = "open"
        for used in sorted(graph[module]):
            if state.get(used) == "open":
                cycles.append(path[path.index(used):] + [used] if used in path else [module, used])
            elif used not in state:
                visit(used, path + [used])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
