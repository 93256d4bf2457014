#!/usr/bin/env python3
r"""Stage 5 (token list): a sentencepiece model and ESPnet token list from the training text.

The model is trained on the targets and the transcripts (``text`` without its prefix,
``text.ctc``). The language and task tokens found in the data, ``<na>``,
``<notimestamps>`` and the timestamp bounds are user-defined symbols (OWSM layout, see
``espnet_gated/data/tokenizer.py``); ``--extra_langs`` reserves tokens for languages that are
not in this training data yet.

Usage:
    python -m espnet_gated.bin.make_tokens --data_dir dump/raw/train \
        --out_dir data/token_list/bpe_unigram300 --nbpe 300 --bpemode unigram
"""

import argparse
import logging
from pathlib import Path

from espnet_gated.cli import entry_point, existing_dir
from espnet_gated.data.datadir import read_data_dir
from espnet_gated.data.tokenizer import prefix_symbols, train_bpe, unk_report
from espnet_gated.utils import atomic_write


def make_tokens(data_dir: Path, out_dir: Path, nbpe: int, bpemode: str = "unigram", extra_langs=()) -> Path:
    utts = read_data_dir(data_dir)
    langs = sorted({u.lang for u in utts} | set(extra_langs))
    tasks = sorted({u.task for u in utts})
    out_dir.mkdir(parents=True, exist_ok=True)
    train_text = out_dir / "train.txt"
    atomic_write(train_text, "".join(f"{u.text}\n{u.text_ctc}\n" for u in utts))
    bpe_model, token_list = train_bpe(train_text, out_dir, nbpe, prefix_symbols(langs, tasks), model_type=bpemode)
    logging.info(f"{token_list}: languages {langs}, tasks {tasks}")
    report = unk_report(bpe_model, [(u.utt_id, f"{u.text} {u.text_ctc}") for u in utts])
    if report.n_unk:
        logging.warning(report.summary(str(data_dir)))
    return token_list


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=existing_dir, required=True)
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--nbpe", type=int, default=300)
    parser.add_argument("--bpemode", choices=("unigram", "bpe"), default="unigram")
    parser.add_argument("--extra_langs", default="", help="comma-separated ISO-639-3 codes to reserve tokens for")
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    extra = [c.strip().strip("<>") for c in args.extra_langs.split(",") if c.strip()]
    make_tokens(args.data_dir, args.out_dir, args.nbpe, args.bpemode, extra)  # the data-dir checks name file and line


if __name__ == "__main__":
    main()
