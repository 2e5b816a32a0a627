#!/usr/bin/env bash
# The peer of benchmarks/serve_vs_infinity.py: Infinity (infinity-emb 0.0.78, torch engine,
# CPU) in its own virtualenv, benchmarks/.infinity-venv (gitignored), never in the
# platform's. Idempotent: a second run only checks that `infinity_emb` is there.
#
#   bash benchmarks/setup_infinity.sh            # then: benchmarks/.infinity-venv/bin/infinity_emb
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${INFINITY_VENV:-$here/.infinity-venv}"
python="${PYTHON:-$here/../.venv/bin/python}"  # the platform's: same torch version
if [ -x "$venv/bin/infinity_emb" ] && "$venv/bin/python" -c "import infinity_emb" 2>/dev/null; then
    echo "infinity ready: $venv/bin/infinity_emb"
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# A CPU torch (no CUDA wheels): the platform's own version where a local wheel of it is
# found (pip's find-links), else from PyTorch's CPU index; then Infinity's extras.
torch_version="$("$python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if ! "$venv/bin/pip" install --quiet "torch==${torch_version:-none}" 2>/dev/null; then
    "$venv/bin/pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
"$venv/bin/pip" install --quiet "infinity-emb[server,torch]==0.0.78"
"$venv/bin/python" -c "import infinity_emb, torch; print('infinity', infinity_emb.__version__, 'torch', torch.__version__)"
echo "infinity ready: $venv/bin/infinity_emb"
