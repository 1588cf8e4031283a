#!/usr/bin/env bash
# The GPU measurements of issue 26 in one call of about 9 minutes, so that a 15-minute
# device budget leaves room to run it again. Prepared on the CPU machines, where no GPU
# could be had; never yet run on one.
#
# Before the call, on this machine (the GPU image has PyTorch and transformers, not the
# project's other packages, and cannot download; Python 3.12 there):
#   benchmarks/gpu_wheels.sh            # fills .whl/ (ignored by git), ~15 MB
# Then the device tool:
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600)
# What it writes comes back from $OUT: one log and one JSON per benchmark.
#
# Shapes: a random-weight BLOOM-7b1 (30 layers, hidden 4096, 32 heads, vocab 250,880,
# bf16: 14 GB) for extraction, ablation and sampled generation; the metrics on a
# synthetic BLOOM-7b1-shaped store (900 samples × 30 × 16,384) with B = 1000 against
# the plain pass. Each step has its own time limit; a step that runs out is reported and
# the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lingua-franca-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_UPDATE_DOWNLOAD_COUNTS=0
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import torch, transformers, zarr; print(torch.__version__, transformers.__version__, zarr.__version__)" \
  | tee -a "$OUT/device.txt"

BLOOM_7B1=(--full-560m --layers 30 --hidden 4096 --heads 32 --dtype bfloat16 --device cuda)
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, keep going
  local name=$1 seconds=$2
  shift 2
  echo "== $name (limit ${seconds} s)"
  timeout "$seconds" "$@" >"$OUT/$name.log" 2>&1
  echo "   exit $? after ${SECONDS} s in all; last lines:"
  tail -n 12 "$OUT/$name.log"
}

# extraction with the store write against a bare forward (goal >= 0.95), and against
# the paper's generate-per-sentence code (goal >= 10x)
step extraction 200 python3 benchmarks/bench_extraction.py "${BLOOM_7B1[@]}" \
  --repeats 3 --json "$OUT/extraction.json"
# sampled generation under a deactivation hook against a bare generate (goal >= 0.95),
# and labelling throughput
step generation 120 python3 benchmarks/bench_generation.py "${BLOOM_7B1[@]}" \
  --prompts 8 --batch-size 72 --repeats 3 --json "$OUT/generation.json"
# the ablation job's conditions per second (full + random + 9 languages)
step ablation 90 python3 benchmarks/bench_ablation.py "${BLOOM_7B1[@]}" \
  --seqlen 2048 --windows 2 --repeats 1 --json "$OUT/ablation.json"
# the metrics job with B = 1000 intervals on the GPU against the plain pass
step metrics 100 python3 benchmarks/bench_metrics.py --device cuda --rounds 1 \
  --workdir /tmp/lf-metrics
echo "done in ${SECONDS} s; files in $OUT"
