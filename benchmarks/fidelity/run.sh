#!/usr/bin/env bash
# make fidelity: build the Safety-Gymnasium 1.0.0 reference environment if it is missing (a separate
# venv under benchmarks/fidelity/.reference, git-ignored, never a dependency of saferl), then compare
# every navigation id against it (fidelity.py; extra arguments go there, e.g. --ids ... --episodes 4).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REF="${FIDELITY_REFERENCE:-$HERE/.reference}"
PYTHON="${PYTHON:-python3}"
PROJECT_PYTHON="${PROJECT_PYTHON:-$HERE/../../.venv/bin/python}"

if [ ! -f "$REF/.installed" ]; then
    echo "building the reference environment in $REF (safety-gymnasium 1.0.0, gymnasium 0.28.1, mujoco 2.3.3)"
    rm -rf "$REF"
    "$PYTHON" -m venv "$REF"
    "$REF/bin/pip" install --quiet "numpy<2" gymnasium==0.28.1 mujoco==2.3.3 gymnasium-robotics==1.2.2 \
        xmltodict imageio pyyaml
    # --no-deps: its pygame pin has no wheel for Python 3.11, and rendering is not needed here.
    "$REF/bin/pip" install --quiet --no-deps safety-gymnasium==1.0.0
    SITE="$("$REF/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$REF/bin/python" "$HERE/patch_reference.py" "$SITE"
    "$REF/bin/python" -c "import safety_gymnasium" 2>/dev/null
    touch "$REF/.installed"
fi
exec "$PROJECT_PYTHON" "$HERE/fidelity.py" --reference-python "$REF/bin/python" "$@"
