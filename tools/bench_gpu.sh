#!/usr/bin/env bash
# Throughput of gated vs ESPnet dense decoding on a GPU: OWSM v3.1 base and medium dimensions
# (random weights), batches of 1 and 16, ctc_weight 0 and 0.5; one table (bench.md) per size.
#
#   tools/bench_gpu.sh                          # -> exp/bench/gpu_<time>/<size>_<dtype>/bench.{md,json,png}
#   tools/bench_gpu.sh exp/bench/gpu_h200       # another output folder
#   SIZES=base DTYPES="float32 bfloat16" tools/bench_gpu.sh   # also the gated variants in bfloat16
#
# Needs a CUDA device and this package installed (PYTHON, default .venv/bin/python). Not run on a GPU yet:
# the medium model is built on the CPU and written to disk twice (gated and dense, 4 GB each) before timing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-exp/bench/gpu_$(date +%Y%m%d-%H%M%S)}
python=${PYTHON:-.venv/bin/python}
sizes=${SIZES:-base medium}
dtypes=${DTYPES:-float32}
"$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "bench_gpu.sh: no CUDA device visible to torch")'
"$python" -c 'import torch; print(torch.cuda.get_device_name(0), "torch", torch.__version__)'
for size in $sizes; do
    for dtype in $dtypes; do
        "$python" -m espnet_gated.bin.bench --throughput --size "$size" --device cuda --dtype "$dtype" \
            --batch "1 16" --ctc_weight "0 0.5" --n_utts 32 --utt_sec 5 --decode_len 30 --beam 5 \
            --threads 4 --out "$out/${size}_${dtype}"
    done
done
for table in "$out"/*/bench.md; do echo "== $table"; cat "$table"; done
