#!/usr/bin/env bash
# Copy the training checkpoint of a run into checkpoints/MODEL.pt (one file per model, overwritten)
# and refresh its card checkpoints/MODEL.json (step, validation curve, config), so that a later
# session on a fresh machine continues the run: the training commands resume from the run's own
# checkpoint, or else from checkpoints/MODEL.pt.
#   bash scripts/save_checkpoint.sh unet [MODEL ...]
# Runs are looked for in runs/MODEL (jointrecon train) and runs/points/MODEL (jointrecon train-contour).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p checkpoints
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
for model in "$@"; do
  run="runs/$model"
  [ -f "$run/checkpoint.pt" ] || run="runs/points/$model"
  src="$run/checkpoint.pt"
  [ -f "$src" ] || { echo "no checkpoint at runs/$model or runs/points/$model" >&2; exit 1; }
  cp "$src" "checkpoints/$model.pt.tmp" && mv "checkpoints/$model.pt.tmp" "checkpoints/$model.pt"
  [ -f "$run/train.log" ] && cp "$run/train.log" "checkpoints/$model.train.txt"
  "$py" -c "import sys; from napari_jointrecon.training.train import write_checkpoint_card as w; print(w(sys.argv[1]))" "$model"
  echo "checkpoints/$model.pt: $(du -h "checkpoints/$model.pt" | cut -f1)"
done
