#!/usr/bin/env bash
# Copy the training checkpoints of runs/MODEL/checkpoint.pt into checkpoints/MODEL.pt (one file per
# model, overwritten), so that a later session on a fresh machine continues the run:
# `jointrecon train MODEL` resumes from runs/MODEL/checkpoint.pt, or else from checkpoints/MODEL.pt.
#   bash scripts/save_checkpoint.sh unet [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p checkpoints
for model in "$@"; do
  src="runs/$model/checkpoint.pt"
  [ -f "$src" ] || { echo "no checkpoint at $src" >&2; exit 1; }
  cp "$src" "checkpoints/$model.pt.tmp" && mv "checkpoints/$model.pt.tmp" "checkpoints/$model.pt"
  [ -f "runs/$model/train.log" ] && cp "runs/$model/train.log" "checkpoints/$model.train.txt"
  echo "checkpoints/$model.pt: $(du -h "checkpoints/$model.pt" | cut -f1)"
done
