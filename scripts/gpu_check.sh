#!/usr/bin/env bash
# One-command check of the GPU paths on a single-GPU machine, under 8 minutes; prints one table.
#
#   bash scripts/gpu_check.sh [OUT_DIR]          (default /tmp/uniembed-gpu-check)
#
# Steps (each with its own time limit; a failed or skipped step does not stop the others):
#   embed     the embed job on the GPU in bfloat16 (demo corpus: text, images, image+text)
#   mine      the demo mine job, embedder and judge on the GPU, judge.engine=vllm
#   judge     benchmarks/judge_engines.py on the GPU: float32 vLLM vs our scorer (max |dP|),
#             pairs/s of both, bfloat16 vLLM
#   tune-gpu  20 tune steps (bf16) on the mine output, one GPU rank
#   tune-2r   20 tune steps on 2 ranks (gloo, CPU): the cross-rank gather of the loss
#             (two NCCL ranks cannot share one GPU)
#   serve     serve run jobs/configs/serve.yaml on the GPU: one /v1/embeddings and one
#             /v1/rerank request over HTTP
#   faiss     faiss-gpu: exact inner-product search of 1,000 queries over 200,000 vectors,
#             recall@10 against faiss-cpu
#
# What the machine needs (it may reach nothing outside): this repository, a CUDA .venv
# (UNIEMBED_TORCH=cuda bash scripts/setup.sh) and the GPU flavour of vLLM's venv
# (UNIEMBED_TORCH=cuda UNIEMBED_VLLM=1 bash scripts/setup.sh), built where a package index is
# reachable and copied over with the working tree (both venvs live inside it). The demo
# models come from packages inside .venv (built into the model cache on first use).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-/tmp/uniembed-gpu-check}
mkdir -p "$OUT/logs"
PY="$ROOT/.venv/bin/python"
export PYTHONPATH="$ROOT/platform:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
export UNIEMBED_CACHE=${UNIEMBED_CACHE:-$HOME/.cache/uniembed}
ROWS=()

row() { ROWS+=("| $1 | $2 | $3 | $4 |"); echo "[gpu-check] $1: $3 ($4, $2 s)" >&2; }

# step NAME LIMIT_S COMMAND...: runs it, its log in $OUT/logs/NAME.log; the result column is
# the log's last line starting with "RESULT:" (or its last line).
step() {
  local name=$1 limit=$2
  shift 2
  local start end rc result
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  end=$(date +%s)
  result=$(grep '^RESULT:' "$OUT/logs/$name.log" | tail -1 | cut -c9-)
  [ -n "$result" ] || result=$(tail -1 "$OUT/logs/$name.log" | cut -c1-120)
  if [ $rc -eq 0 ]; then
    row "$name" $((end - start)) "$result" ok
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    row "$name" $((end - start)) "$result" "TIMEOUT ${limit}s"
  else
    row "$name" $((end - start)) "$result" "FAILED rc=$rc (logs/$name.log)"
  fi
}

# --- preflight ---------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >"$OUT/logs/gpu.log" 2>&1; then
  echo "[gpu-check] no GPU (nvidia-smi -L failed)" >&2
  exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "[gpu-check] $PY has no CUDA torch: UNIEMBED_TORCH=cuda bash scripts/setup.sh" >&2
  exit 2
fi
HAVE_VLLM=1
if ! "$ROOT/.venv-vllm/bin/python" -c "import vllm" >"$OUT/logs/vllm-import.log" 2>&1; then
  HAVE_VLLM=0
fi
GPU=$(head -1 "$OUT/logs/gpu.log")

# --- steps -------------------------------------------------------------------------------
step embed 90 "$PY" -c "
import json, sys
from jobs.embed import main
rc = main(['output=$OUT/embed', 'model.device=cuda', 'model.dtype=bfloat16'])
s = json.load(open('$OUT/embed/_SUCCESS.json'))
print('RESULT:', s['rows_out'], 'rows, dim', s['dim'], round(s['items_per_s'], 1), 'items/s')
sys.exit(rc)"

if [ $HAVE_VLLM = 1 ]; then
  step mine 150 "$PY" -c "
import json, sys
from jobs.mine import main
rc = main(['output=$OUT/mine', 'judge.engine=vllm', 'judge.model.device=cuda',
           'embedder.device=cuda'])
r = json.load(open('$OUT/mine/report.json'))
print('RESULT:', 'rows', r['rows_written'], 'pairs', r['judged_pairs'], 'auc', round(r['auc'], 4))
sys.exit(rc)"
  step judge 150 bash -c "'$PY' benchmarks/judge_engines.py --device cuda --queries 100 \
    --block-size 0 --no-mine --threads 4 | tee /dev/stderr | grep '^| vLLM' | sed 's/^/RESULT: /' | tr '\n' ' '"
else
  row mine 0 "no vLLM in .venv-vllm: UNIEMBED_TORCH=cuda UNIEMBED_VLLM=1 bash scripts/setup.sh" SKIPPED
  row judge 0 "no vLLM in .venv-vllm (see mine)" SKIPPED
fi

MINED="$OUT/mine"
[ -f "$MINED/_SUCCESS.json" ] || MINED=""
if [ -n "$MINED" ]; then
  step tune-gpu 90 "$PY" jobs/tune.py --config jobs/configs/tune_demo.yaml --input "$MINED" \
    checkpoint.storage_path="$OUT/train" checkpoint.name=gpu-check-1gpu scaling.use_gpu=true \
    scaling.num_workers=1 scaling.precision=bf16 train.max_steps=20
  step tune-2r 120 "$PY" jobs/tune.py --config jobs/configs/tune_demo.yaml --input "$MINED" \
    checkpoint.storage_path="$OUT/train" checkpoint.name=gpu-check-2ranks scaling.use_gpu=false \
    scaling.num_workers=2 train.max_steps=20
else
  row tune-gpu 0 "no mine output to tune on" SKIPPED
  row tune-2r 0 "no mine output to tune on" SKIPPED
fi

step serve 120 bash -c "
  '$ROOT/.venv/bin/serve' run jobs/configs/serve.yaml >'$OUT/logs/serve-run.log' 2>&1 &
  pid=\$!
  trap 'kill \$pid 2>/dev/null; wait \$pid 2>/dev/null' EXIT
  for i in \$(seq 100); do
    curl -sf http://127.0.0.1:8000/healthz >/dev/null && break; sleep 1
  done
  e=\$(curl -sf http://127.0.0.1:8000/v1/embeddings -H 'content-type: application/json' \
      -d '{\"input\": [\"a small dog\"]}' | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)[\"data\"][0][\"embedding\"]))') || exit 1
  r=\$(curl -sf http://127.0.0.1:8000/v1/rerank -H 'content-type: application/json' \
      -d '{\"query\": \"a small dog\", \"documents\": [\"a puppy\", \"a tax form\"]}' \
      | '$PY' -c 'import json,sys; print([round(x[\"relevance_score\"],3) for x in json.load(sys.stdin)[\"results\"]])') || exit 1
  echo \"RESULT: embedding dim \$e, rerank scores \$r\""

step faiss 60 "$PY" -c "
import time, numpy as np, faiss
rng = np.random.default_rng(0)
xb = rng.standard_normal((200_000, 384), dtype=np.float32); faiss.normalize_L2(xb)
xq = xb[:1000] + 0.1 * rng.standard_normal((1000, 384), dtype=np.float32); faiss.normalize_L2(xq)
cpu = faiss.IndexFlatIP(384); cpu.add(xb)
t = time.perf_counter(); _, want = cpu.search(xq, 10); t_cpu = time.perf_counter() - t
gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
gpu.search(xq[:10], 10)
t = time.perf_counter(); _, got = gpu.search(xq, 10); t_gpu = time.perf_counter() - t
recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got)])
print(f'RESULT: recall@10 {recall:.4f}, {1000 / t_gpu:.0f} q/s GPU vs {1000 / t_cpu:.0f} q/s CPU')"

# --- the table -----------------------------------------------------------------------------
echo
echo "GPU check on $GPU ($(date -u +%Y-%m-%dT%H:%MZ)); logs in $OUT/logs"
echo
echo "| step | seconds | result | status |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
if printf '%s\n' "${ROWS[@]}" | grep -q "FAILED\|TIMEOUT"; then
  exit 1
fi
