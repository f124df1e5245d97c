#!/usr/bin/env bash
# Train every learned model one after another (resumable: rerun to continue after an interruption),
# ship the weights and cards into the package, then evaluate everything into docs/RESULTS.md.
# Run in the background:  nohup bash scripts/train_all.sh > runs/train_all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-"unet nafnet nafnet_nodose redcnn cncl autoencoder resnet nafnet_anatomy"}
for m in $MODELS; do
  if [ -f "runs/$m/exported_summary.json" ]; then
    echo "== $m already trained and exported"
    continue
  fi
  echo "== training $m ($(date -u +%H:%M:%S))"
  .venv/bin/jointrecon train "$m"
done
if [ -z "${SKIP_EVALUATE:-}" ]; then
  echo "== evaluating ($(date -u +%H:%M:%S))"
  .venv/bin/jointrecon evaluate
fi
echo "== done ($(date -u +%H:%M:%S))"
