#!/usr/bin/env bash
# The CUDA checks alone (no training), for a second, short GPU call: onnxruntime-gpu from the parts
# of tools/gpu/prepare.sh (the training data's parts need not come: send part-01 onwards), then
#   1. tools/gpu/tf32.py: CUDA vs CPU with TF32 convolutions on and off;
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
pack
deselect=()
$py -c "import av" 2>/dev/null || deselect=(--deselect tests/gpu/test_cuda.py::test_video_on_cuda_keeps_every_frame)
timeout 150 $py -m pytest -m cuda tests/gpu -v -rA -p no:cacheprovider "${deselect[@]}" > "$W/gpu-tests.log" 2>&1
say "cuda tests: $(tail -n1 "$W/gpu-tests.log")"
pack
$py - "$W/p12" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
small = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC).save(f"{sys.argv[1]}/p12.jpg", quality=92)
PY
for mode in auto whole exact; do
  args=(); [ "$mode" = whole ] && args=(--tile 0); [ "$mode" = exact ] && args=(--tiling exact --tile 1024)
  s=$(date +%s.%N)
  timeout 60 imgxlate convert "$W/p12/p12.jpg" --to vangogh --out "$W/o_$mode" --format png --device cuda \
    "${args[@]}" --json > "$W/p12_$mode.json" 2> "$W/p12_$mode.err"
  echo "$mode rc=$? wall=$($py -c "import time; print(round(time.time() - $s, 2))") s" >> "$W/p12.txt"
done
$py - "$W" >> "$W/p12.txt" 2>&1 <<'PY'
import sys
import numpy as np
from PIL import Image
w = sys.argv[1]
ref = np.asarray(Image.open(f"{w}/o_whole/p12.png"), dtype=np.float64)
for mode in ("auto", "exact"):
    b = np.asarray(Image.open(f"{w}/o_{mode}/p12.png"), dtype=np.float64)
    mse = float(np.mean((ref - b) ** 2))
    print(mode, "vs whole:", "identical" if mse == 0 else f"{10 * np.log10(255**2 / mse):.2f} dB, max {int(np.abs(ref - b).max())}")
PY
say "12 MP: $(tr '\n' ' ' < "$W/p12.txt")"
pack
exit 0
