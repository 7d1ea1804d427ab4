#!/usr/bin/env bash
# Sourced by session.sh and check.sh on the GPU machine: a 12 MP photo (4000x3000 JPEG) through
# `imgxlate convert --device cuda`, automatic, whole (--tile 0) and exact-tiled (1024 px; tiles kept on
# the GPU, then staged through host memory with IMGXLATE_DEVICE_TILES=0), PNG out;
# wall times and each output against the whole-image one go to $W/p12.txt. Needs: $W, $py, say().
$py - "$W/p12" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
small = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC).save(f"{sys.argv[1]}/p12.jpg", quality=92)
PY
# exact: tiles kept on the GPU (torch is there); exact_host: the same staged through host memory
for mode in auto whole exact exact_host; do
  args=(); [ "$mode" = whole ] && args=(--tile 0); [ "${mode%_host}" = exact ] && args=(--tiling exact --tile 1024)
  host=1; [ "$mode" = exact_host ] && host=0
  s=$(date +%s.%N)
  IMGXLATE_DEVICE_TILES=$host timeout 60 imgxlate convert "$W/p12/p12.jpg" --to vangogh --out "$W/o_$mode" \
    --format png --device cuda "${args[@]}" --json > "$W/p12_$mode.json" 2> "$W/p12_$mode.err"
  echo "$mode rc=$? wall=$($py -c "import time; print(round(time.time() - $s, 2))") s" >> "$W/p12.txt"
done
$py - "$W" >> "$W/p12.txt" 2>&1 <<'PY'
import sys
import numpy as np
from PIL import Image
w = sys.argv[1]
ref = np.asarray(Image.open(f"{w}/o_whole/p12.png"), dtype=np.float64)
for mode in ("auto", "exact", "exact_host"):
    b = np.asarray(Image.open(f"{w}/o_{mode}/p12.png"), dtype=np.float64)
    mse = float(np.mean((ref - b) ** 2))
    print(mode, "vs whole:", "identical" if mse == 0 else f"{10 * np.log10(255**2 / mse):.2f} dB, max {int(np.abs(ref - b).max())}")
PY
say "12 MP: $(tr '\n' ' ' < "$W/p12.txt")"
