#!/usr/bin/env bash
# Set everything up and run the test suite (headless: pytest-xvfb starts a virtual display).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest --xvfb-backend=xvfb "$@"
