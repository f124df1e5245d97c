#!/usr/bin/env bash
# Set everything up and run the main job: napari with the plugin and its sample data. Without a
# display, a headless demo loads the sample in napari under Xvfb and writes screenshots and a report
# to demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${DISPLAY:-}" ] && [ -z "${JOINTRECON_HEADLESS:-}" ]; then
  exec .venv/bin/jointrecon view sample_data/thorax_phantom_dicom
fi
exec xvfb-run -a -s "-screen 0 1400x1000x24" .venv/bin/jointrecon demo --out demo_output
