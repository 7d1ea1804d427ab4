#!/usr/bin/env bash
# Prepare the one GPU session (issues 10 and 13), here, where PyPI and ../shared are reachable.
#
# The GPU machine has Python 3.12, torch, onnx, CUDA 13 and cuDNN 9 for CUDA 13, and a CPU-only
# onnxruntime; nothing downloads there, ../shared does not travel and one call carries at most 64 MiB
# (this repository's tree, ~18 MB, included). So everything the session needs goes into one payload,
# cut into parts that travel one call each:
#   data.tar     ../shared/data/vangogh2photo (the training set of the bundled model, 64 MB of JPEG/PNG)
#   rest.tar.xz  onnxruntime-gpu 1.31.1 without its CUDA provider library (and without TensorRT's)
#   cuda.so.xz   libonnxruntime_providers_cuda.so (284 MB; xz -9 makes it 186 MB, the wheel's zip 220)
#   av-*.whl     PyAV (FFmpeg's libraries) for Python 3.12, so the CUDA suite's video test runs (35 MB)
# .device-parts/manifest.txt says where each piece sits in the payload (offset, size, sha256);
# tools/gpu/session.sh puts it together on the machine. platformdirs (absent from the image) goes to .whl/.
# Prints the plan: one call per part, the last part with the session itself.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -d .git ] || { echo "run from a plain clone (.git must be a folder)" >&2; exit 2; }
shared=${IMGXLATE_SHARED:-../shared}
version=${ORT_VERSION:-1.31.1}
P=.device-parts
exclude=.git/info/exclude
for d in /.device-parts/ /.device-stash/ /.whl/; do grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"; done
mkdir -p "$P/build" .whl

# 1. the training data, as it is (JPEG and PNG do not compress further)
tar -C "$shared/data" -cf "$P/build/data.tar" vangogh2photo

# 2. onnxruntime-gpu, repacked (cached: xz -9 of the CUDA library takes ~2 minutes on 2 cores)
if [ ! -s "$P/build/cuda.so.xz" ] || [ ! -s "$P/build/rest.tar.xz" ]; then
  pip download -q --no-deps --python-version 3.12 --only-binary=:all: -d "$P/build" "onnxruntime-gpu==$version"
  rm -rf "$P/build/x" && mkdir -p "$P/build/x"
  (cd "$P/build/x" && python3 -m zipfile -e ../onnxruntime_gpu-*.whl .)
  lib=onnxruntime/capi/libonnxruntime_providers_cuda.so
  xz -9e -T2 -c "$P/build/x/$lib" > "$P/build/cuda.so.xz"
  (cd "$P/build/x" && tar cf - --exclude="$lib" --exclude=onnxruntime/capi/libonnxruntime_providers_tensorrt.so .) \
    | xz -9 -T2 > "$P/build/rest.tar.xz"
  rm -rf "$P/build/x"
fi

# 2b. PyAV for the machine's Python (absent from its image); last in the payload
rm -f "$P"/build/av-*.whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$P/build" av
av=$(basename "$(ls "$P"/build/av-*.whl | head -n1)")

# 3. one payload, its manifest, and parts small enough for a call beside the tree
: > "$P/manifest.txt"
offset=0
pieces=(data.tar rest.tar.xz cuda.so.xz "$av")
for piece in "${pieces[@]}"; do
  size=$(stat -c %s "$P/build/$piece")
  echo "$piece $offset $size $(sha256sum "$P/build/$piece" | cut -d' ' -f1)" >> "$P/manifest.txt"
  offset=$((offset + size))
done
rm -rf "$P/chunks" && mkdir -p "$P/chunks"
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n1 | cut -f1)
part=$(( (64 * 1048576 - tree - 2 * 1048576) / 1048576 ))  # MiB: the limit, less the tree and a margin
(cd "$P/build" && cat "${pieces[@]}") | split -b "${part}M" -d - "$P/chunks/part-"
echo $((part * 1048576)) > "$P/part-bytes"

python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl platformdirs

cat "$P/manifest.txt"
echo "payload $offset bytes in parts of $part MiB; the tree is $((tree / 1048576)) MiB"
parts=$(ls "$P/chunks")
last=$(echo "$parts" | tail -n1)
echo
echo "Plan: one call per part, each right after the last (the machine stays warm 30 s):"
for p in $parts; do
  [ "$p" = "$last" ] && break
  echo "  run(carry=[\"$P/chunks/$p\"], command=\"mkdir -p .device-stash && cp $P/chunks/$p .device-stash/ && ls -l .device-stash\", timeout_s=60)"
done
echo "  run(carry=[\"$P/chunks/$last\", \"$P/manifest.txt\", \".whl\"], command=\"bash tools/gpu/session.sh SECONDS\", timeout_s=600)"
echo "SECONDS: what the session may use (budget_left_s less ~60 s); results come back under \$OUT."
