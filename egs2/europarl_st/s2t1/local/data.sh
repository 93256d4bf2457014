#!/usr/bin/env bash
# Stage 1 of the Europarl-ST recipe: import the corpus (v1.1, https://www.mllp.upv.es/europarl-st/) into data/.
#
#   local/data.sh [--root DIR] [--langs deu,fra,ita] [--tasks asr,st_eng] [--nj N]
#
# DIR holds <src>/audios/*.m4a and <src>/<tgt>/{train,dev,test}/segments.* (default: $EUROPARL_ST_ROOT,
# else downloads/europarl-st/v1.1). The Python interpreter is $PYTHON, else the repository's .venv, else python3.
set -euo pipefail

root=${EUROPARL_ST_ROOT:-downloads/europarl-st/v1.1}
langs=deu,fra,ita   # the paper's source languages
tasks=asr,st_eng    # ASR and X->en ST
while [ $# -gt 0 ]; do
    case "$1" in
        --root|--langs|--tasks|--nj)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) echo "$0: unknown option $1 (--root, --langs, --tasks, --nj)" >&2; exit 2 ;;
    esac
done

if [ ! -d "${root}" ]; then
    echo "$0: Europarl-ST not found at '${root}'. Download v1.1 from https://www.mllp.upv.es/europarl-st/," \
        "extract it and pass its directory: ./run.sh --corpus_root /path/to/v1.1 (or set EUROPARL_ST_ROOT)" >&2
    exit 1
fi
repo_root=$(cd "$(dirname "$0")/../../../.." && pwd)
python=${PYTHON:-}
if [ -z "${python}" ]; then
    if [ -x "${repo_root}/.venv/bin/python" ]; then python="${repo_root}/.venv/bin/python"; else python=python3; fi
fi
"${python}" -m espnet_gated.bin.prepare europarl_st --root "${root}" --out data --langs "${langs}" --tasks "${tasks}"
