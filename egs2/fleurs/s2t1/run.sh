#!/usr/bin/env bash
# FLEURS: multilingual ASR and X->en ST of read FLoRes sentences (languages: local/data.sh).
# Gated fine-tuning of OWSM v3.1 (base by default; --init_from picks another model or a local copy) and the
# same fine-tuning without gates (the reference), decoding and scoring of both and, at stage 17, the sparsity
# sweep. Stages and options: ../../TEMPLATE/s2t1/s2t.sh --help
#
#   ./run.sh --local_data_opts "--root /corpora/fleurs --langs deu,fra,ita"   # or FLEURS_ROOT=... ./run.sh
#   ./run.sh --init_from espnet/owsm_v3.1_ebf                # OWSM v3.1 medium (or small: ..._ebf_small)
#   ./run.sh --init_from /models/owsm_v3.1_ebf_base          # a local copy of the model (offline machines)
#   ./run.sh --stage 17 --stop_stage 17 --sweep_sides "dec"  # sparsity sweep of the decoder (default: "enc dec both")
set -euo pipefail
cd "$(dirname "$0")"
exec ../../TEMPLATE/s2t1/s2t.sh \
    --init_from espnet/owsm_v3.1_ebf_base \
    --train_config conf/train.yaml \
    --decode_config conf/decode.yaml \
    --sweep_config conf/sweep.yaml \
    --budget_config conf/sweep_budget.yaml \
    --sweep_targets "0.3 0.5 0.7" \
    "$@"
