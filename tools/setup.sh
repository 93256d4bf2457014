#!/usr/bin/env bash
# One-time (idempotent) set-up: system tools, a virtual environment in .venv, the package.
#
#   tools/setup.sh            # everything
#   SKIP_APT=1 tools/setup.sh # no system packages (install espeak-ng and ffmpeg yourself)
#
# Versions are those measured to install together (see README, "Installation notes"):
# ESPnet 202511 needs torch/torchaudio 2.11 and pip < 26.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
    if [ "${SKIP_APT:-0}" = 1 ]; then
        echo "setup: missing ${need[*]}; install them (Debian/Ubuntu: sudo apt-get install ${need[*]})" >&2
    elif [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    elif command -v sudo >/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: missing ${need[*]} and no root: sudo apt-get install ${need[*]} (macOS: brew install ${need[*]})" >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "${python}" -m venv .venv
fi
stamp=.venv/.espnet_gated_installed
if [ ! -f "${stamp}" ] || [ setup.py -nt "${stamp}" ]; then
    # pip >= 26 refuses espnet's dependency ci_sdr (a direct-URL extra); older pips install it
    if .venv/bin/python -c "import sys, pip; sys.exit(int(pip.__version__.split('.')[0]) < 26)"; then
        .venv/bin/python -m pip install -q "pip<26"
    fi
    .venv/bin/python -m pip install -q -e ".[test]"
    touch "${stamp}"
fi
.venv/bin/python -c "import espnet_gated, espnet_gated.tasks; print('espnet_gated', espnet_gated.__version__, 'ready')" 2>&1 | grep ready  # ESPnet imports, the gated classes register
