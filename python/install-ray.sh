#!/usr/bin/env bash
# Installs what `--cluster ray` needs into .venv-ray/ (git-ignored): Ray, pinned, and the colocate_ray
# shim (editable, so the hosting actors run this checkout's code). Idempotent and quick when done:
# it only reinstalls when the pinned version or the shim's pyproject changed.
set -euo pipefail
cd "$(dirname "$0")/.."
RAY_VERSION=2.60.0
VENV=.venv-ray
PYTHON=${PYTHON:-python3}
stamp="$VENV/.colocate-ray-$RAY_VERSION-$(cksum < python/pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ]; then
    echo "Ray $RAY_VERSION and colocate_ray are installed in $VENV"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "ray==$RAY_VERSION"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e python/
"$VENV/bin/python" -c "import ray, colocate_ray; assert ray.__version__ == '$RAY_VERSION', ray.__version__"
rm -f "$VENV"/.colocate-ray-*
touch "$stamp"
echo "installed Ray $RAY_VERSION and colocate_ray in $VENV (activate: source $VENV/bin/activate)"
