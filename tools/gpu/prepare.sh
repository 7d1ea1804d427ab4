#!/usr/bin/env bash
# Prepare the one GPU run of issue 18 (run here, from the repository root, where PyPI is reachable).
#
# The GPU machine has Python 3.12, torch, CUDA 13 and cuDNN 9 for CUDA 13, and a CPU-only onnxruntime;
# nothing downloads there and one call carries at most 64 MiB. So:
#   - onnxruntime-gpu (255 MB) is fetched by ../shared/tools/ort-gpu-parts.sh and split into 45 MiB
#     parts (.device-parts/, ignored); each part travels in its own call into .device-stash/ there;
#   - the few pure-Python / small wheels the image lacks go to .whl/ (ignored) and travel with the last call;
#   - the last call runs tools/gpu/session.sh, which installs all of it into a venv and measures.
# Prints the exact plan (calls, carry lists, commands).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
# ort-gpu-parts.sh writes .git/info/exclude: run this from a plain clone, not a git worktree.
[ -d .git ] || { echo "run from a plain clone (.git must be a folder)" >&2; exit 2; }
shared=${IMGXLATE_SHARED:-../shared}
bash "$shared/tools/ort-gpu-parts.sh" >/dev/null
# That splits into 55 MiB parts; with this repository's ~11 MiB working tree a call would carry over
# 64 MiB, so split again into 45 MiB parts.
wheel=$(ls .device-parts/onnxruntime_gpu-*.whl | head -n1)
rm -rf .device-parts/chunks && mkdir -p .device-parts/chunks
split -b 45M -d "$wheel" .device-parts/chunks/part-
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF "/.whl/" "$exclude" || echo "/.whl/" >> "$exclude"
mkdir -p .whl
# What the device image lacks (its package list: /work/.library/device/KINDS.md): platformdirs and
# PyAV (the video path). imageio-ffmpeg is only the tests' reference FFmpeg and, at 68 MB, would not
# fit in one call: it stays behind (tests/gpu do not use it).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl platformdirs av
# Each call carries the working tree too (64 MiB in all): say what one call weighs.
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n1 | cut -f1)
part=$(du -b "$(ls .device-parts/chunks/part-* | head -n1)" | cut -f1)
whl=$(du -cb .whl/*.whl | tail -n1 | cut -f1)
echo "one call carries: tree $((tree / 1048576)) MiB + a part $((part / 1048576)) MiB, or tree + .whl $((whl / 1048576)) MiB (limit 64 MiB)"
if [ $((tree + part)) -gt $((64 * 1048576)) ] || [ $((tree + whl)) -gt $((64 * 1048576)) ]; then
  echo "too large for one call: split the wheel into smaller parts (edit the split size in ort-gpu-parts.sh's copy)" >&2
  exit 1
fi
du -sh .whl .device-parts/chunks
n=$(ls .device-parts/chunks | wc -l)
echo
echo "Plan: $((n + 1)) device calls, each right after the last (the machine stays warm 30 s)."
for part in .device-parts/chunks/part-*; do
  echo "  run(carry=[\"$part\"], command=\"mkdir -p .device-stash && cp $part .device-stash/\", timeout_s=120)"
done
echo "  run(carry=[\".whl\"], command=\"bash tools/gpu/session.sh\", timeout_s=560)"
echo "Results come back under \$OUT: gpu.txt, gpu-tests.log, gpu-tests.xml, util.txt, gpu-bench.json."
