#!/usr/bin/env bash
# Stage 1 of the default recipe: synthesize the embedded corpus (conf/corpus.yaml) into
# data/ (Kaldi-style dirs) and downloads/embedded/ (wavs). Needs espeak-ng.
#
#   local/data.sh [--nj N] [options of espnet_gated.bin.make_embedded_corpus, e.g. --train_sentences 300]
#
# The Python interpreter is $PYTHON, else the repository's .venv, else python3.
set -euo pipefail

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "$0: espeak-ng is not installed; install it with: sudo apt-get install espeak-ng (Debian/Ubuntu)" \
        "or: brew install espeak-ng (macOS)" >&2
    exit 1
fi

nj=1
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --nj) [ $# -ge 2 ] || { echo "$0: --nj needs a value" >&2; exit 2; }; nj=$2; shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done

repo_root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-}
if [ -z "${python}" ]; then
    if [ -x "${repo_root}/.venv/bin/python" ]; then python="${repo_root}/.venv/bin/python"; else python=python3; fi
fi

"${python}" -m espnet_gated.bin.make_embedded_corpus --config conf/corpus.yaml --out data \
    --audio_dir downloads/embedded --nj "${nj}" ${extra[@]+"${extra[@]}"}
