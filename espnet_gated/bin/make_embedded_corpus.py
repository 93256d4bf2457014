#!/usr/bin/env python3
r"""Stage 1 of the default recipe: the embedded multilingual ASR/ST corpus, made offline.

Sentences and their English translations come from the built-in grammars
(espnet_gated/corpus/languages); espeak-ng speaks them with several voice variants,
speeds and pitches. Writes <out>/train, <out>/dev (all languages and tasks) and
<out>/test_<lang>_<task>, with 16 kHz wavs under <audio_dir>/<lang>/. Re-running
reuses the wavs already there. Needs espeak-ng (sudo apt-get install espeak-ng).

Usage:
    # the default corpus (conf/corpus.yaml: languages, sizes, speakers, seed)
    python -m espnet_gated.bin.make_embedded_corpus --config conf/corpus.yaml \
        --out data --audio_dir downloads/embedded --nj 2

    # a quick smaller one with another seed
    python -m espnet_gated.bin.make_embedded_corpus --config conf/corpus.yaml \
        --out data --audio_dir downloads/embedded --nj 2 \
        --train_sentences 300 --dev_sentences 30 --test_sentences 30 --seed 1
"""

import argparse
import dataclasses
import logging
from pathlib import Path

from espnet_gated.cli import entry_point, existing_file
from espnet_gated.corpus.embedded import load_config, prepare_embedded


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", type=existing_file, required=True, help="corpus YAML (languages, sentences, speakers)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the data dirs go here")
    parser.add_argument("--audio_dir", type=Path, required=True, help="the wavs go to <audio_dir>/<lang>/")
    parser.add_argument("--nj", type=int, default=1, help="parallel synthesis processes")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    for split in ("train", "dev", "test"):
        parser.add_argument(f"--{split}_sentences", type=int, help=f"override the {split} sentences per language")
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    config = load_config(args.config)  # CorpusConfigError (a ValueError) names the file and key
    sentences = dict(config.sentences)
    for split in sentences:
        if getattr(args, f"{split}_sentences") is not None:
            sentences[split] = getattr(args, f"{split}_sentences")
    seed = config.seed if args.seed is None else args.seed
    config = dataclasses.replace(config, sentences=sentences, seed=seed)
    prepare_embedded(config, args.out, args.audio_dir, nj=args.nj)


if __name__ == "__main__":
    main()
