#!/usr/bin/env bash
# Stage 1 of the CoVoST 2 recipe: import CoVoST 2 on Common Voice v4 audio into data/.
#
#   local/data.sh [--root DIR] [--covost_dir DIR] [--langs de,fr] [--tasks asr,st_eng] [--nj N]
#
# --root is Common Voice v4 (cv-corpus-4-2019-12-10: <src>/validated.tsv, <src>/clips/*.mp3; default:
# $COVOST2_ROOT, else downloads/cv-corpus-4-2019-12-10); --covost_dir holds covost_v2.<src>_<tgt>.tsv
# (default: next to each validated.tsv). The Python interpreter is $PYTHON, else the repository's .venv,
# else python3.
set -euo pipefail

root=${COVOST2_ROOT:-downloads/cv-corpus-4-2019-12-10}
covost_dir=""
langs=de,fr         # X->en sources with published OWSM v3.1 BLEU (conf/owsm_results.yaml)
tasks=asr,st_eng
while [ $# -gt 0 ]; do
    case "$1" in
        --root|--covost_dir|--langs|--tasks|--nj)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) echo "$0: unknown option $1 (--root, --covost_dir, --langs, --tasks, --nj)" >&2; exit 2 ;;
    esac
done

if [ ! -d "${root}" ]; then
    echo "$0: Common Voice v4 not found at '${root}'. CoVoST 2 needs cv-corpus-4-2019-12-10 plus the" \
        "covost_v2.<src>_<tgt>.tsv files (https://github.com/facebookresearch/covost); pass them with" \
        "./run.sh --local_data_opts '--root /path/to/cv4 --covost_dir /path/to/covost' (or set COVOST2_ROOT)" >&2
    exit 1
fi
if [ -n "${covost_dir}" ] && [ ! -d "${covost_dir}" ]; then
    echo "$0: --covost_dir '${covost_dir}' not found" >&2
    exit 1
fi
repo_root=$(cd "$(dirname "$0")/../../../.." && pwd)
python=${PYTHON:-}
if [ -z "${python}" ]; then
    if [ -x "${repo_root}/.venv/bin/python" ]; then python="${repo_root}/.venv/bin/python"; else python=python3; fi
fi
"${python}" -m espnet_gated.bin.prepare covost2 --root "${root}" --out data --langs "${langs}" --tasks "${tasks}" \
    ${covost_dir:+--covost_dir "${covost_dir}"}
