#!/usr/bin/env bash
# Stage 1 of the FLEURS recipe: import the corpus (https://huggingface.co/datasets/google/fleurs) into data/.
#
#   local/data.sh [--root DIR] [--langs deu,fra,ita] [--tasks asr,st_eng] [--nj N]
#
# DIR is the dataset snapshot holding data/<config>/{train,dev,test}.tsv and audio/*.tar.gz (default:
# $FLEURS_ROOT, else downloads/fleurs); ST to English also needs data/en_us/*.tsv. The Python interpreter
# is $PYTHON, else the repository's .venv, else python3.
set -euo pipefail

root=${FLEURS_ROOT:-downloads/fleurs}
langs=deu,fra,ita   # ISO-639-3 or FLEURS configs (de_de); 102 languages available
tasks=asr,st_eng
while [ $# -gt 0 ]; do
    case "$1" in
        --root|--langs|--tasks|--nj)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) echo "$0: unknown option $1 (--root, --langs, --tasks, --nj)" >&2; exit 2 ;;
    esac
done

if [ ! -d "${root}/data" ]; then
    echo "$0: FLEURS not found at '${root}' (no data/ inside). Download it (git clone" \
        "https://huggingface.co/datasets/google/fleurs, with git-lfs) and pass its directory:" \
        "./run.sh --local_data_opts '--root /path/to/fleurs' (or set FLEURS_ROOT)" >&2
    exit 1
fi
repo_root=$(cd "$(dirname "$0")/../../../.." && pwd)
python=${PYTHON:-}
if [ -z "${python}" ]; then
    if [ -x "${repo_root}/.venv/bin/python" ]; then python="${repo_root}/.venv/bin/python"; else python=python3; fi
fi
"${python}" -m espnet_gated.bin.prepare fleurs --root "${root}" --out data --langs "${langs}" --tasks "${tasks}"
