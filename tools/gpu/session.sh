#!/usr/bin/env bash
# The GPU run of issue 18, as one command on the GPU machine (see tools/gpu/prepare.sh for the plan).
# On a machine without CUDA it is a dry run: the CUDA tests skip with their reason and the benchmark
# parts report no CUDA; it still exits 0 so the script itself is checked on CPU.
#
#   bash tools/gpu/session.sh            # results under $OUT (or /tmp/imgxlate-gpu-out)
# Time box: ~9 minutes in all (tests 4, utilisation 1, benchmarks 4).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/imgxlate-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}  # the dry run here: PYTHON=.venv/bin/python
if ls .device-stash/part-* >/dev/null 2>&1; then

  cat .device-stash/part-* > /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  python3 -m venv --system-site-packages /tmp/gpuenv
  /tmp/gpuenv/bin/pip install -q --no-index --no-deps /tmp/onnxruntime_gpu-*.whl .whl/*.whl
  /tmp/gpuenv/bin/pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
  py=/tmp/gpuenv/bin/python
fi
export PATH="$(dirname "$py"):$PATH"
{
  date -u
  nvidia-smi -L 2>&1 || echo "no nvidia-smi"
  nvidia-smi --query-gpu=driver_version,memory.total --format=csv 2>&1 || true
  $py -c "import onnxruntime as o, sys; print('onnxruntime', o.__version__, o.__file__); print(o.get_available_providers())"
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

# 1. The CUDA test suite (skips with its reason where there is no CUDA).
timeout 240 $py -m pytest -m cuda tests/gpu -v -rA -s -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" \
  2>&1 | tee "$OUT/gpu-tests.log" | tail -25

# 2. GPU utilisation while converting a folder of 48 JPEGs at 1024x768 (decode and encode overlapped).
imgs=/tmp/imgxlate-util-in
rm -rf "$imgs" /tmp/imgxlate-util-out && mkdir -p "$imgs"
$py - "$imgs" <<'PY'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for i in range(48):
    small = rng.integers(0, 255, (26, 34, 3), dtype=np.uint8)
    Image.fromarray(small).resize((1024, 768), Image.Resampling.BICUBIC).save(f"{sys.argv[1]}/p{i:02d}.jpg", quality=92)
PY
if command -v nvidia-smi >/dev/null 2>&1 && $py -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" 2>/dev/null; then
  nvidia-smi dmon -s u -d 1 > "$OUT/util.txt" 2>&1 &
  dmon=$!
  ( time timeout 90 imgxlate convert "$imgs" --to vangogh --out /tmp/imgxlate-util-out --device cuda --json ) \
    > "$OUT/util-convert.json" 2>> "$OUT/util.txt"
  kill "$dmon" 2>/dev/null; wait "$dmon" 2>/dev/null
else
  echo "no CUDA: utilisation not measured" > "$OUT/util.txt"
fi

# 3. Benchmarks on the device: convert (ORT fp32/fp16 + IO binding vs PyTorch eager), training
#    (fast vs reference), video fps. Each part has its own time box inside `python -m bench`.
timeout 250 $py -m bench --device cuda --only convert_speed,train_speed,video_speed --quick --timeout 120 \
  --capture --json "$OUT/gpu-bench.json" 2>&1 | tail -40
echo "session done: $(date -u)"
exit 0
