#!/usr/bin/env bash
# Europarl-ST, the paper's experiment (Someki et al., ICLR 2025): OWSM v3.1 fine-tuned with module gates on
# de/fr/it ASR and X->en ST (50% decoder sparsity) and without them (the reference), then the sparsity sweep
# for the encoder, the decoder and both, and a table of our numbers next to the published ones
# (exp/<tag>_paper.md). See README.md.
#
#   ./run.sh --corpus_root /corpora/europarl-st/v1.1              # OWSM v3.1 medium (the paper's), stages 1-13 and 17
#   ./run.sh --corpus_root /corpora/europarl-st/v1.1 --owsm base  # base (101M) or small (367M) instead
#   ./run.sh --init_from /models/owsm_v3.1_ebf                    # a local copy of the model (offline machines)
#   ./run.sh --stage 17 --sweep_sides "dec" --sweep_targets "0.5" # one sweep point
#   ./run.sh --stage 12 --stop_stage 13                           # decode and score again
#
# Options of this script: --owsm base|small|medium, --corpus_root DIR, --init_from DIR|hub name,
# --sweep_sides "enc dec both", --tag NAME, --stage N, --stop_stage N; every other option goes to the engine
# (../../TEMPLATE/s2t1/s2t.sh --help), e.g. --ngpu 1, --sweep_targets, --freeze_backbone true.
set -euo pipefail
cd "$(dirname "$0")"

owsm=medium
corpus_root=${EUROPARL_ST_ROOT:-downloads/europarl-st/v1.1}
init_from=""
sweep_sides="enc dec both"
tag=""
stage=1
stop_stage=17
engine_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --owsm|--corpus_root|--init_from|--sweep_sides|--tag|--stage|--stop_stage)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | cut -c3-; exec ../../TEMPLATE/s2t1/s2t.sh --help ;;
        *) engine_args+=("$1"); shift ;;
    esac
done
case "${owsm}" in
    base) hub=espnet/owsm_v3.1_ebf_base ;;
    small) hub=espnet/owsm_v3.1_ebf_small ;;
    medium) hub=espnet/owsm_v3.1_ebf ;;
    *) echo "$0: --owsm must be base, small or medium" >&2; exit 2 ;;
esac
tag=${tag:-owsm_v3.1_${owsm}_gated}
engine=(
    ../../TEMPLATE/s2t1/s2t.sh
    --init_from "${init_from:-${hub}}"
    --train_config conf/train.yaml
    --decode_config conf/decode.yaml
    --sweep_config conf/sweep.yaml
    --budget_config conf/sweep_budget.yaml
    --sweep_targets "0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9"
    --local_data_opts "--root ${corpus_root}"
    --tag "${tag}"
)

if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 1 ]; then
    "${engine[@]}" ${engine_args[@]+"${engine_args[@]}"} --stage "${stage}" \
        --stop_stage "$((stop_stage < 13 ? stop_stage : 13))"
fi
if [ "${stage}" -le 17 ] && [ "${stop_stage}" -ge 17 ]; then
    "${engine[@]}" ${engine_args[@]+"${engine_args[@]}"} --stage 17 --stop_stage 17 --sweep_sides "${sweep_sides}"
    python=${PYTHON:-../../../.venv/bin/python}
    [ -x "${python}" ] || python=python3
    "${python}" local/paper_table.py --sweep "exp/${tag}_sweep" --paper conf/paper_results.yaml \
        --out "exp/${tag}_paper.md"
fi
