#!/usr/bin/env bash
# The CUDA checks alone (no training), for a second, short GPU call: onnxruntime-gpu from the parts
# of tools/gpu/prepare.sh (the training data's parts need not come: send part-01 onwards), then
#   1. tools/gpu/tf32.py: CUDA vs CPU with TF32 convolutions on and off; tools/gpu/rewrites.py: the CPU
#      graph rewrites timed on CUDA (should make_runner apply them there too?);
#   2. the CUDA test suite;
#   3. a 12 MP photo through `imgxlate convert --device cuda`: automatic, whole, exact-tiled (PNG).
# Results under $OUT: results.tar.gz.   bash tools/gpu/check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
OUT=${OUT:-/tmp/imgxlate-gpu-out}
W=/tmp/imgxlate-gpu
rm -rf "$W" && mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$W/session.log"; }
pack() { tar -C "$W" -czf "$OUT/results.tar.gz" --exclude=o_* --exclude=p12 . ; }
[ -f .device-parts/manifest.txt ] && source tools/gpu/unpack.sh
$py -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" > "$W/gpu.txt" 2>&1
nvidia-smi -L >> "$W/gpu.txt" 2>&1
timeout 60 $py tools/gpu/tf32.py > "$W/tf32.txt" 2>&1
say "tf32: $(cat "$W/tf32.txt")"
timeout 60 $py tools/gpu/rewrites.py cuda > "$W/rewrites.txt" 2>&1
say "graph rewrites on CUDA: $(cat "$W/rewrites.txt")"
pack
deselect=()
$py -c "import av" 2>/dev/null || deselect=(--deselect tests/gpu/test_cuda.py::test_video_on_cuda_keeps_every_frame)
timeout 150 $py -m pytest -m cuda tests/gpu -v -rA -p no:cacheprovider "${deselect[@]}" > "$W/gpu-tests.log" 2>&1
say "cuda tests: $(tail -n1 "$W/gpu-tests.log")"
pack
source tools/gpu/p12.sh
pack
exit 0
