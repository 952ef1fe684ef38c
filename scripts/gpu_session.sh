#!/usr/bin/env bash
# One GPU session's measurements at the paper's scale, in one command that ends before BUDGET seconds:
#
#   BUDGET=540 bash scripts/gpu_session.sh          # on a CUDA machine, from the repository root
#   DRY=1 BUDGET=600 bash scripts/gpu_session.sh    # a CPU dry run of every phase at tiny sizes
#
# 1. the training step of gradcam, GAIN, GAIN_ext and the floor on VGG-16 at 224 px (scripts/gpu_check.py):
#    images/s, FLOPs, MFU and peak memory, bf16 at batch 32/64/128 and fp32 at 64, cuDNN autotuning on and off;
# 2. the built-in data exported as a VOC tree at VOC 2012's sizes (gain-bench export-voc) and the loader's images/s
#    on it (scripts/loader_speed.py);
# 3. suites/paper-scale.toml, seed 0 first, then the other seeds while time is left (a run cut short is re-run by
#    the next `gain-bench run`; finished ones are kept);
# 4. suites/voc-synthetic.toml (voc-paper.toml's audit on the exported tree, VGG-16 pre-trained on the unbiased
#    corpus instead of ImageNet weights), as far as time allows: Grad-CAM and GAIN_ext-9, seed 0.
# Results folders come back as tarballs without checkpoints; every phase's output goes to $OUT/session.log.
set -u
OUT=${OUT:-/tmp/gpu-session-out}
BUDGET=${BUDGET:-540}
WORK=${WORK:-/tmp/gpu-session}
mkdir -p "$OUT" "$WORK"
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }
log() { echo "[$(($(date +%s) - start)) s] $*" | tee -a "$OUT/session.log"; }
run() { log "\$ $*"; "$@" 2>&1 | tee -a "$OUT/session.log"; }
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
GB=(python3 -m benchmark)
if [ "${DRY:-0}" = 1 ]; then
  DEVICE=cpu
  CHECK=(--device cpu --model vgg16 --size 32 --batches 4 --steps 2 --precisions fp32,bf16 --cudnn-benchmark on)
  CHECK2=(--device cpu --model vgg16 --size 32 --batches 8 --steps 2 --precisions bf16 --cudnn-benchmark off)
  EXPORT=(--image-size 32 --train-aug 300 --seg-train 100 --val 60 --shifted 30)
  TINY=(--set data.image_size=32 --set data.n_train=200 --set data.n_val=40 --set data.n_shifted=20
        --set data.n_counterfactual=20 --set model.pretrain.epochs=1 --set train.epochs=1 --set "budgets=[9, 78]")
  VOC=(--set data.image_size=32 --set train.epochs=1 --set model.pretrain.epochs=1 --set data.workers=2)
  LOADER=(--image-size 32 --workers 1,2 --batches 3)
else
  DEVICE=cuda
  CHECK=(--batches 32,64,128 --precisions bf16 --cudnn-benchmark on --steps 15)
  CHECK2=(--batches 64 --precisions fp32,bf16 --cudnn-benchmark off,on --steps 15)
  EXPORT=()
  TINY=()
  VOC=(--set train.epochs=2 --set train.batch_size=64)
  LOADER=(--workers 8,16 --batches 10 --device cuda)
fi
log "start: budget ${BUDGET} s, device ${DEVICE}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$OUT/session.log"
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())" \
  2>&1 | tee -a "$OUT/session.log"

# 1. the step
run timeout $(($(left) - 400)) python3 scripts/gpu_check.py --skip-tests --channels-last "${CHECK[@]}" \
  --json "$OUT/gpu_check_bf16_batches.json"
run timeout $(($(left) - 360)) python3 scripts/gpu_check.py --skip-tests --channels-last "${CHECK2[@]}" \
  --json "$OUT/gpu_check_precisions.json"

# 2. the export and the loader
run timeout $(($(left) - 330)) "${GB[@]}" export-voc --data-root "$WORK/data" "${EXPORT[@]}"
run timeout $(($(left) - 300)) python3 scripts/loader_speed.py --data-root "$WORK/data" "${LOADER[@]}" \
  --json "$OUT/loader_speed.json"

# 3. the paper-scale suite: seed 0, then the rest while time is left (60 s kept for phase 4 and the tarballs)
SUITE=(run paper-scale --device "$DEVICE" --data-root "$WORK/data" --out "$WORK/paper-scale" --quiet "${TINY[@]}")
run timeout $(($(left) - 150)) "${GB[@]}" "${SUITE[@]}" --seeds 0 --no-report
run timeout $(($(left) - 150)) "${GB[@]}" "${SUITE[@]}" --seeds 0,1,2 --no-report

# 4. voc-paper's audit on the export (suites/voc-synthetic.toml), a part
run timeout $(($(left) - 40)) "${GB[@]}" run voc-synthetic --device "$DEVICE" --data-root "$WORK/data" \
  --out "$WORK/voc-synthetic" --quiet --seeds 0 --only method=gradcam --only method=gain_ext --only budget=0 --only budget=9 --no-report \
  "${VOC[@]}"

for name in paper-scale voc-synthetic; do
  [ -d "$WORK/$name" ] && tar czf "$OUT/$name.tgz" -C "$WORK" --exclude=model.pt "$name"
done
log "done: $(ls "$OUT" | tr '\n' ' ')"
