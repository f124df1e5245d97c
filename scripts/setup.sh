#!/usr/bin/env bash
# Set up everything napari-jointrecon needs on a Debian machine (Python 3.10+, no GPU, no display):
# system libraries for Qt/OpenGL under Xvfb, a virtual environment in .venv, the CPU build of
# torch (pinned first, so nothing pulls a CUDA build), then the package with its test extras.
# Idempotent: a second run only checks and returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"

APT_PACKAGES="xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libfontconfig1 libdbus-1-3
  libglib2.0-0 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1
  g++"
missing=()
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages (install them as root): ${missing[*]}" >&2
  fi
fi

# A real PACS for tests/test_pacs.py and for trying the PACS dock: Orthanc with its DICOMweb plugin.
# The tests start their own Orthanc on free ports; a system service the install starts is stopped.
# Without apt (or root) the PACS tests skip with that reason (CI, JOINTRECON_REQUIRE_DATA=1: fail).
if { ! command -v Orthanc >/dev/null 2>&1 && [ ! -x /usr/sbin/Orthanc ]; } || ! dpkg -s orthanc-dicomweb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Orthanc and its DICOMweb plugin (PACS tests)"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >/dev/null \
      || echo "setup: could not install orthanc orthanc-dicomweb; the PACS tests will skip" >&2
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
      systemctl disable --now orthanc >/dev/null 2>&1 || true
    fi
  else
    echo "setup: Orthanc is missing (as root: apt-get install orthanc orthanc-dicomweb); the PACS tests will skip" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# Reinstall only when the project's requirements changed.
stamp="$VENV/.jointrecon-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import napari_jointrecon, torch" 2>/dev/null; then
  exit 0
fi
echo "setup: installing Python packages into $VENV (about a minute the first time)"
"$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null \
  || "${PIP[@]}" install "$TORCH_PIN" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch" || { echo "setup: torch failed to install" >&2; exit 1; }
"${PIP[@]}" install -e ".[testing]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import napari_jointrecon, napari, PyQt6" || { echo "setup: install failed" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup: done"
