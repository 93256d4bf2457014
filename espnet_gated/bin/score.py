#!/usr/bin/env python3
r"""Stage 13 (score): quality, module usage, compute and decode time of decoded test sets.

Reads ``<ref_root>/<set>/{text,utt2lang,utt2task,utt2num_samples}`` and the decode's
``<decode_dir>/<set>/1best_recog/{text_nospecial,token,gates}`` and ``<decode_dir>/<set>/timing.json``;
writes ``scores.json``, ``usage.tsv``, ``summary.json``, ``RESULTS.md``, ``bleu_signatures.json``,
``utterance_stats.json``, ``usage_<lang>_<task>.png`` and ``details/<set>.txt`` under ``--out``
(see espnet_gated.recipe.report).
ASR is scored by WER (CER for languages without word boundaries or with ``normalizer: cer`` in
``--normalizers``), ST by BLEU and chrF. Utterances without a hypothesis count as empty ones (warned).
Without ``--config`` the FLOPs section is left out.

With ``--reference`` (the results directory of the reference, scored first) RESULTS.md opens with the
comparison, each change with its paired bootstrap 95% interval over the utterances (sacrebleu's
resampling; seed ``SACREBLEU_SEED``, 12345 unless set). With ``--seed_runs`` (every seed's results
directory, this one among them, the others already scored with their references) it opens with every
seed's rows and the mean and standard deviation over seeds.

Usage:
    python -m espnet_gated.bin.score \
        --ref_root dump/raw \
        --decode_dir exp/s2t/decode \
        --test_sets "test_deu_asr test_deu_st_eng" \
        --config exp/s2t/config.yaml \
        --beam_size 5 \
        --normalizers conf/corpus.yaml \
        --out exp/s2t/results
    python -m espnet_gated.bin.score ... --out exp/s2t/results --reference exp/s2t_reference/results \
        --seed_runs 1=exp/s2t/results 2=exp/s2t_seed2/results 3=exp/s2t_seed3/results
"""

import argparse
import logging
from pathlib import Path

from espnet_gated.cli import entry_point, existing_dir, existing_file
from espnet_gated.recipe.report import make_results
from espnet_gated.recipe.scoring import BOOTSTRAP_SAMPLES


def seed_run(value: str):
    """SEED=RESULTS_DIR"""
    seed, sep, results_dir = value.partition("=")
    if not sep or not seed or not results_dir:
        raise argparse.ArgumentTypeError(f"'{value}' is not SEED=RESULTS_DIR")
    return seed, Path(results_dir)


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ref_root", type=existing_dir, required=True, help="directory holding the reference test sets"
    )
    parser.add_argument("--decode_dir", type=existing_dir, required=True, help="directory holding <set>/1best_recog")
    parser.add_argument("--test_sets", required=True, help="space-separated test set names")
    parser.add_argument("--config", type=existing_file, help="the model's training config.yaml (for the FLOPs)")
    parser.add_argument("--beam_size", type=int, default=1, help="beam size of the decode (for the FLOPs)")
    parser.add_argument("--normalizers", type=existing_file, help="corpus YAML with languages: [{code, normalizer}]")
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument(
        "--reference", type=Path, help="results directory of the reference without pruning: RESULTS.md opens with both"
    )
    parser.add_argument("--reference_label", default="", help="what the reference is, for RESULTS.md")
    parser.add_argument(
        "--all_open", action="store_true", help="decoded with every gate open (gate_mode all_open): no targets apply"
    )
    parser.add_argument(
        "--bootstrap_samples", type=int, default=BOOTSTRAP_SAMPLES, help="resamples of the paired bootstrap"
    )
    parser.add_argument(
        "--seed_runs",
        nargs="+",
        type=seed_run,
        default=(),
        help="SEED=RESULTS_DIR of every seed, --out among them: RESULTS.md adds the mean and spread over seeds",
    )
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (score) %(levelname)s: %(message)s")
    summary = make_results(
        args.ref_root,
        args.decode_dir,
        args.test_sets.split(),
        args.out,
        config=args.config,
        beam_size=args.beam_size,
        normalizers=args.normalizers,
        reference=args.reference,
        reference_label=args.reference_label,
        seed_runs=args.seed_runs,
        bootstrap_samples=args.bootstrap_samples,
        all_open=args.all_open,
    )
    logging.info(f"{args.out}/RESULTS.md: {summary['n_utts']} utterances of {len(summary['test_sets'])} test sets")


if __name__ == "__main__":
    main()
