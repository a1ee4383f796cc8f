"""Make Safety-Gymnasium 1.0.0 importable on Python 3.11 (run with the reference environment's python).

Python 3.11 refuses a dataclass field whose default is a mutable object (its ``color: np.array =
COLOR['...']`` fields); this rewrites each such default as ``field(default_factory=lambda: ...)`` in
the installed package of that environment only. Idempotent.
"""

import pathlib
import re
import sys

FIELD = re.compile(r"^(\s+\w+: [\w.]+ = )((?:COLOR|GROUP)\[[^\]]+\])\s*$")


def patch_file(path: pathlib.Path) -> bool:
    lines = path.read_text().splitlines(keepends=True)
    changed = False
    for n, line in enumerate(lines):
        match = FIELD.match(line.rstrip("\n"))
        if match:
            lines[n] = f"{match.group(1)}field(default_factory=lambda: {match.group(2)})\n"
            changed = True
    if not changed:
        return False
    text = "".join(lines)
    if not re.search(r"^from dataclasses import .*\bfield\b", text, re.M):
        text = re.sub(r"^from dataclasses import dataclass\s*$", "from dataclasses import dataclass, field", text,
                      count=1, flags=re.M)
    path.write_text(text)
    return True


def main(site_packages: str) -> None:
    root = pathlib.Path(site_packages) / "safety_gymnasium"
    patched = [p for p in sorted(root.rglob("*.py")) if patch_file(p)]
    print(f"patched {len(patched)} files under {root}")


if __name__ == "__main__":
    main(sys.argv[1])
