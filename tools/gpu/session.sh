#!/usr/bin/env bash
# The GPU session (issues 10 and 13) as one command on the GPU machine; tools/gpu/prepare.sh makes the
# parts it needs and prints the plan.
#
#   bash tools/gpu/session.sh SECONDS     # SECONDS: what this call may use in all (default 540)
#
# 1. puts onnxruntime-gpu and the training data together from the parts, checks each piece's sha256,
#    installs the project and platformdirs into /tmp/site (beside the image's torch and onnx);
# 2. trains two candidates for the bundled model side by side on the one GPU (bf16, channels_last,
#    batch 4, 256 px crops, ngf 32 / 9 blocks), their schedule sized from a short calibration run so
#    that both end, export and come back inside SECONDS. The candidates' own arguments are CAND_A and
#    CAND_B; by default both continue the shipped pair (--init-from imgxlate/models/vangogh2photo, its
#    recipe; fresh discriminators warmed up alone first: --d-warmup-steps $WARMUP, default 200), B with
#    --compile, so that short GPU sessions add up instead of starting over. (The
#    first session, 2026-11-29, trained from scratch with --lambda-identity 1.5 and 0.5.)
# 3. meanwhile runs the CUDA test suite, times a 12 MP photo through the CUDA provider (p12.sh) and the
#    CPU graph rewrites on CUDA (rewrites.py; while the training runs share the GPU: stated with the
#    figures);
# 4. brings back the four ONNX files and results.tar.gz (logs, model cards, test log, timings).
#
# Dry run on a machine without CUDA: IMGXLATE_GPU_DRY=1 PYTHON=.venv/bin/python bash tools/gpu/session.sh 300
# (tiny networks and 64 px crops, the CPU; the CUDA tests skip with their reason).
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
BUDGET=${1:-540}
OUT=${OUT:-/tmp/imgxlate-gpu-out}
mkdir -p "$OUT"
W=/tmp/imgxlate-gpu
rm -rf "$W" && mkdir -p "$W"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
dry=${IMGXLATE_GPU_DRY:-0}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$W/session.log"; }

# --- 1. put the pieces together ----------------------------------------------------------------
data=${IMGXLATE_DATA:-}
if [ -f .device-parts/manifest.txt ]; then
  source tools/gpu/unpack.sh
elif [ -z "$data" ]; then
  data=../shared/data/vangogh2photo
fi
[ -n "${PYTHON:-}" ] && export PATH="$(dirname "$py"):$PATH"
{
  date -u
  nvidia-smi -L 2>&1 || echo "no nvidia-smi"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
  nproc
  $py -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.__file__); print(o.get_available_providers())"
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  $py -c "import imgxlate, onnx; print('imgxlate', imgxlate.__version__, imgxlate.__file__, 'onnx', onnx.__version__)"
  command -v imgxlate imgxlate-train
} > "$W/gpu.txt" 2>&1
cat "$W/gpu.txt"

# --- 2. two training runs, sized to the time left ----------------------------------------------
if [ "$dry" = 1 ]; then
  net=(--ngf 8 --n-blocks 2 --image-size 64 --load-size 72 --device cpu --precision fp32 --threads 1 --workers 1)
else
  net=(--ngf 32 --n-blocks 9 --image-size 256 --load-size 286 --device cuda --precision bf16 --workers 4)
fi
common=(--domain-a "$data/vangogh" --domain-b "$data/photo" --name-a vangogh --name-b photo
        "${net[@]}" --upsample resize --down-padding reflect --channels-last --batch-size 4
        --sample-every 0 --seed 0 --quiet)
shipped=imgxlate/models/vangogh2photo
# The shipped pair has no discriminators: fresh ones train alone first (--d-warmup-steps; a warm-up step
# costs about a fifth of a full one: 2.05 against 0.37 images/s on the CPU, seventh session).
warm=${WARMUP:-200}
[ "$dry" = 1 ] && warm=4
if [ "$dry" = 1 ]; then  # tiny networks cannot start from the shipped pair
  default_a="--lambda-identity 0.5 --d-warmup-steps $warm"; default_b="--lambda-identity 1.5"
else
  default_a="--init-from $shipped --lambda-identity 0.5 --d-warmup-steps $warm"
  default_b="--init-from $shipped --lambda-identity 0.5 --d-warmup-steps $warm --compile"
fi
declare -A CAND=([A]="${CAND_A:-$default_a}" [B]="${CAND_B:-$default_b}")
say "candidates: A: ${CAND[A]}; B: ${CAND[B]}"
# calibration: both side by side, as the real runs will be, 80 steps each
for r in A B; do
  # shellcheck disable=SC2086  # the candidate's arguments are words
  imgxlate-train "${common[@]}" ${CAND[$r]} --d-warmup-steps 0 --out "$W/cal$r" --epochs 1 --epochs-decay 1 \
    --max-steps 80 --log-every 20 --checkpoint-every 0 --no-export > "$W/cal$r.out" 2>&1 &
done
tc=$(date +%s)
wait
cal_wall=$(( $(date +%s) - tc ))
read -r per_step ok_cands <<<"$($py - "$W" <<'PY'
import json, sys
from pathlib import Path
# seconds per step after start-up and cuDNN's autotuning (and a compile): steps 20 -> 80 of the
# slower run; a candidate whose calibration did not reach step 80 is left out of the real runs
per, ok = [], []
for r in "AB":
    log = Path(sys.argv[1]) / f"cal{r}" / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    t = {int(x["step"]): float(x["time"]) for x in map(json.loads, filter(None, lines))}
    if 20 in t and 80 in t:
        per.append((t[80] - t[20]) / 60)
        ok.append(r)
print(round(max(per), 4) if per else 0, "".join(ok))
PY
)"
if [ -z "$ok_cands" ]; then
  say "FAILED: no candidate finished its calibration; see cal?.out"
  tar -C "$W" -czf "$OUT/results.tar.gz" --exclude='cal?' --exclude=vangogh2photo .
  exit 0
fi
for r in A B; do
  [[ "$ok_cands" == *"$r"* ]] || say "candidate $r left out: its calibration failed: $(tr -d '│╭╮╰╯─' < "$W/cal$r.out" 2>/dev/null | grep -iE 'error|no such|invalid|failed' | tail -n1 | tr -s ' ')"
done
spe=$(( $(find "$data/photo" -type f | wc -l) / 4 ))  # steps per epoch: max(len A, len B) // batch
[ "$dry" = 1 ] && spe=$(( spe > 40 ? 40 : spe ))
# time for training: what is left, less export (~45 s), packing (~15 s), a margin (25 s) and the
# longest discriminator warm-up the candidates ask for (counted at a quarter of a full step's time)
warm_used=0
for r in $(echo "$ok_cands" | grep -o .); do
  w=$(grep -oE -- '--d-warmup-steps[ =][0-9]+' <<<"${CAND[$r]}" | grep -oE '[0-9]+$' | tail -n1 || true)
  [ -n "$w" ] && [ $((10#$w)) -gt "$warm_used" ] && warm_used=$((10#$w))
done
train_s=$(( $(left) - 85 - $($py -c "print(int($warm_used * $per_step / 4))") ))
overhead=$(( cal_wall - $($py -c "print(int(80 * $per_step))") ))
steps=$($py -c "print(max(2 * $spe, int(($train_s - $overhead) / $per_step)))")
epochs_total=$(( steps / spe ))
[ "$epochs_total" -lt 2 ] && epochs_total=2
ep=$(( epochs_total / 2 )); dec=$(( epochs_total - ep ))
say "calibration: ${per_step} s/step side by side, ${cal_wall} s for 80 steps with start-up; ${train_s} s for training (after ${warm_used} warm-up steps) -> $epochs_total epochs of $spe steps ($ep constant + $dec decay)"
extra_dry=(); [ "$dry" = 1 ] && extra_dry=(--max-steps $(( epochs_total * spe )))
tt=$(date +%s)
for r in $(echo "$ok_cands" | grep -o .); do
  # shellcheck disable=SC2086
  imgxlate-train "${common[@]}" ${CAND[$r]} --out "$W/run$r" --epochs "$ep" \
    --epochs-decay "$dec" --log-every 50 --checkpoint-every 0 --json "${extra_dry[@]}" > "$W/run$r.json" 2> "$W/run$r.err" &
  echo $! > "$W/run$r.pid"
done
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi dmon -s um -d 2 > "$W/dmon.txt" 2>&1 &
  dmon=$!
fi

# --- 3. meanwhile: the CUDA suite and a 12 MP photo on the CUDA provider ------------------------
deselect=()
$py -c "import av" 2>/dev/null || deselect=(--deselect tests/gpu/test_cuda.py::test_video_on_cuda_keeps_every_frame)
timeout 200 $py -m pytest -m cuda tests/gpu -v -rA -p no:cacheprovider "${deselect[@]}" \
  --junitxml="$W/gpu-tests.xml" > "$W/gpu-tests.log" 2>&1
say "cuda tests: $(tail -n1 "$W/gpu-tests.log")"
if $py -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" 2>/dev/null; then
  source tools/gpu/p12.sh
  timeout 60 $py tools/gpu/rewrites.py cuda > "$W/rewrites.txt" 2>&1
  say "graph rewrites on CUDA (while the runs share the GPU): $(cat "$W/rewrites.txt")"
fi

# --- 4. wait for the runs (SIGINT at the deadline: they checkpoint, then export) ---------------
deadline=$(( T0 + BUDGET - 60 ))
for r in $(echo "$ok_cands" | grep -o .); do
  pid=$(cat "$W/run$r.pid")
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "run $r past the deadline: interrupting it (it checkpoints) and exporting that checkpoint"
    kill -INT "$pid"; sleep 15
    timeout 40 imgxlate-train export "$W/run$r" --out "$W/run$r/model" --overwrite > "$W/export$r.out" 2>&1
  fi
done
[ -n "${dmon:-}" ] && kill "$dmon" 2>/dev/null
say "training: $(( $(date +%s) - tt )) s for both runs"
for r in A B; do
  for d in a2b b2a; do
    [ -f "$W/run$r/model/$d.onnx" ] && cp "$W/run$r/model/$d.onnx" "$OUT/$r-$d.onnx"
  done
  cp "$W/run$r/log.jsonl" "$W/run$r-log.jsonl" 2>/dev/null
  cp "$W/run$r/model/README.md" "$W/run$r-card.md" 2>/dev/null
done
ls -l "$OUT" >> "$W/session.log"
tar -C "$W" -czf "$OUT/results.tar.gz" --exclude='run?' --exclude='cal?' --exclude='o_*' --exclude=p12 \
  --exclude=vangogh2photo .
say "session done"
exit 0
