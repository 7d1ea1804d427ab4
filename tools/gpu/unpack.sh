#!/usr/bin/env bash
# Sourced by session.sh and check.sh on the GPU machine: puts the payload of tools/gpu/prepare.sh
# together from the parts that came (each call's part is kept in .device-stash/), extracts each piece
# whose sha256 matches, and installs onnxruntime-gpu, PyAV, platformdirs and this project into /tmp/site.
# A piece whose parts did not all come is left out and said (check.sh sends no training data).
# Needs: $W (work folder), $py, say(). Sets: data (the training folders, when they came), site.
mkdir -p .device-stash
cp -n .device-parts/chunks/part-* .device-stash/ 2>/dev/null
part_bytes=$(stat -c %s .device-stash/part-00 2>/dev/null || stat -c %s "$(ls .device-stash/part-* | head -n1)")
[ -f .device-parts/part-bytes ] && part_bytes=$(cat .device-parts/part-bytes)
# a sparse payload: each part at its own offset, so missing parts leave holes, not shifts
: > "$W/payload"
for p in .device-stash/part-*; do
  i=$((10#${p##*-}))
  dd if="$p" of="$W/payload" bs=1M seek=$((i * part_bytes / 1048576)) conv=notrunc status=none
done
site=/tmp/site
rm -rf "$site" && mkdir -p "$site"
have=()
while read -r name offset size sha; do
  tail -c +$((offset + 1)) "$W/payload" | head -c "$size" > "$W/$name"
  if [ "$(sha256sum "$W/$name" | cut -d' ' -f1)" = "$sha" ]; then have+=("$name"); else say "left out: $name (its parts did not all come)"; rm -f "$W/$name"; fi
done < .device-parts/manifest.txt
rm -f "$W/payload"
if [ -f "$W/data.tar" ]; then tar -C "$W" -xf "$W/data.tar" && data=$W/vangogh2photo; fi
if [ -f "$W/rest.tar.xz" ] && [ -f "$W/cuda.so.xz" ]; then
  xz -dc "$W/rest.tar.xz" | tar -C "$site" -xf -
  xz -dc -T0 "$W/cuda.so.xz" > "$site/onnxruntime/capi/libonnxruntime_providers_cuda.so"
fi
rm -f "$W"/*.xz "$W/data.tar"
for w in .whl/*.whl "$W"/*.whl; do  # one at a time: a wheel this Python cannot take leaves the others
  [ -f "$w" ] || continue
  $py -m pip install -q --no-index --no-deps --no-compile --target "$site" "$w" > "$W/pip.txt" 2>&1 \
    || say "not installed: $(basename "$w") ($(tail -n1 "$W/pip.txt"))"
done
rm -f "$W"/*.whl
$py -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . 2>&1 | tail -3
export PYTHONPATH=$site PATH=$site/bin:$PATH
if [ -d "$site/onnxruntime" ] && ! $py -c "import onnxruntime" > "$W/ort-import.txt" 2>&1; then
  # training and export do not need CUDA inference: go on with the image's onnxruntime, and say so
  say "onnxruntime-gpu does not import ($(tail -n1 "$W/ort-import.txt")): using the image's onnxruntime"
  rm -rf "$site"/onnxruntime "$site"/onnxruntime_gpu-*.dist-info
fi
say "installed: $(ls "$site" | tr '\n' ' ')"
