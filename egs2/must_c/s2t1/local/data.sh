#!/usr/bin/env bash
# Stage 1 of the MuST-C recipe: import English ASR and En->X ST (https://mt.fbk.eu/must-c/) into data/.
#
#   local/data.sh [--root DIR] [--tasks asr,st_deu] [--asr_pair de] [--nj N]
#
# DIR holds en-<tgt>/data/{train,dev,tst-COMMON,tst-HE}/{wav,txt} (default: $MUSTC_ROOT, else
# downloads/MUST-C). The Python interpreter is $PYTHON, else the repository's .venv, else python3.
set -euo pipefail

root=${MUSTC_ROOT:-downloads/MUST-C}
tasks=asr,st_deu    # add st_fra, st_ita, ... for more en-<tgt> pairs
asr_pair=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root|--tasks|--asr_pair|--nj)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) echo "$0: unknown option $1 (--root, --tasks, --asr_pair, --nj)" >&2; exit 2 ;;
    esac
done

if [ ! -d "${root}" ]; then
    echo "$0: MuST-C not found at '${root}'. Download the en-<tgt> packages from https://mt.fbk.eu/must-c/," \
        "extract them into one directory and pass it: ./run.sh --local_data_opts '--root /path/to/MUST-C'" \
        "(or set MUSTC_ROOT)" >&2
    exit 1
fi
repo_root=$(cd "$(dirname "$0")/../../../.." && pwd)
python=${PYTHON:-}
if [ -z "${python}" ]; then
    if [ -x "${repo_root}/.venv/bin/python" ]; then python="${repo_root}/.venv/bin/python"; else python=python3; fi
fi
"${python}" -m espnet_gated.bin.prepare must_c --root "${root}" --out data --tasks "${tasks}" \
    ${asr_pair:+--asr_pair "${asr_pair}"}
