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


def saferl_imports(path: Path) -> set[str]:
    """The saferl modules a file imports, relative imports resolved."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                package = module[: len(module) - node.level]
                found.add(".".join(package + ((node.module,) if node.module else ())))
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name and name.split(".")[0] == "saferl"}


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
