#!/usr/bin/env python3
"""Import a real corpus into Kaldi-style data directories ``DATA_DIR/<split>/``.

Every split holds all selected languages and tasks (utt2lang, utt2task tell them apart);
audio stays as absolute paths to the corpus files (FLEURS: wavs extracted to
``DATA_DIR/audio/fleurs/``), and the recipe's format stage decodes, resamples and cuts it.
Use one DATA_DIR per corpus. ``--langs`` (spoken languages) takes ISO-639-3 codes or the
corpus's own (``de``, ``de_de``, ``zh-CN``); ``--tasks`` takes ``asr`` and ``st_<lang>``.
The default is everything the corpus has (FLEURS: asr only). Layouts: the docstrings of
``espnet_gated/importers/<corpus>.py``.

Usage:
    python -m espnet_gated.bin.prepare europarl_st --root /corpora/europarl-st/v1.1 --out data/europarl_st \\
        --langs deu,fra,ita --tasks asr,st_eng
    python -m espnet_gated.bin.prepare fleurs --root /corpora/fleurs --out data/fleurs \\
        --langs deu,fra,ita --tasks asr,st_eng
    python -m espnet_gated.bin.prepare covost2 --root /corpora/cv-corpus-4-2019-12-10 --out data/covost2 \\
        --langs fr,de --tasks asr,st_eng [--covost_dir /corpora/covost2]
    python -m espnet_gated.bin.prepare must_c --root /corpora/MUST-C --out data/must_c \\
        --tasks asr,st_deu,st_fra [--asr_pair de]
    python -m espnet_gated.bin.prepare common_voice --root /corpora/cv-corpus-17.0-2024-03-15 --out data/common_voice \\
        --langs deu,zh-CN
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_gated.cli import entry_point, existing_dir
from espnet_gated.importers import PREPARERS


def _codes(value: str) -> Optional[List[str]]:
    codes = [code for code in value.replace(",", " ").split() if code]
    return codes or None


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet_gated.bin.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=existing_dir, required=True, help="the corpus as downloaded")
    common.add_argument("--out", type=Path, required=True, help="DATA_DIR: <split>/ dirs are written here")
    common.add_argument(
        "--langs", type=_codes, default=None, help="spoken languages, e.g. deu,fra or de,fr (default: all)"
    )
    common.add_argument("--tasks", type=_codes, default=None, help="e.g. asr,st_eng (default: all the corpus has)")
    corpora = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name in PREPARERS:
        sub = corpora.add_parser(name, parents=[common], help=f"see espnet_gated/importers/{name}.py")
        if name == "covost2":
            sub.add_argument("--covost_dir", type=Path, help="holds covost_v2.<src>_<tgt>.tsv (default: <root>/<src>/)")
        if name == "must_c":
            sub.add_argument(
                "--asr_pair", help="target whose en-<tgt> gives the ASR data (default: de, else the first)"
            )
    return parser


@entry_point
def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = vars(get_parser().parse_args(argv))
    prepare = PREPARERS[args.pop("corpus")]
    counts = prepare(**args)  # CorpusError and the data-dir checks: the message says what and where
    logging.info(f"wrote {sum(counts.values())} utterances: {', '.join(f'{s} {n}' for s, n in counts.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
