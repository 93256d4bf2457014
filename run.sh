#!/usr/bin/env bash
# Default recipe: gated multilingual ASR (deu, fra, ita, eng) and X->eng ST on the embedded
# espeak-ng corpus, end to end on a CPU. Stages and options: ./run.sh --help
#
#   ./run.sh                              # everything (stages 1-13)
#   ./run.sh --stage 12 --stop_stage 13   # decode and score again
#   ./run.sh --seeds "0 1 2"              # stages 11-13 per seed (exp/<tag>, exp/<tag>_seed1, ...): mean and std
#   ./run.sh --stage 14 --stop_stage 14   # pack the model with a model card (16: upload with --hf_repo)
#   ./run.sh --stage 17 --stop_stage 17   # sparsity sweep (quality vs speed)
set -euo pipefail
cd "$(dirname "$0")"
exec egs2/TEMPLATE/s2t1/s2t.sh \
    --train_config conf/train.yaml \
    --pretrain_config conf/pretrain.yaml \
    --decode_config conf/decode.yaml \
    --sweep_config conf/sweep.yaml \
    --budget_config conf/sweep_budget.yaml \
    --nbpe 1000 \
    --score_opts "--normalizers conf/corpus.yaml" \
    "$@"
