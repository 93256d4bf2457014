"""Sentencepiece model and ESPnet token list in the OWSM layout.

The prefix tokens (``<na>``, languages, tasks, ``<notimestamps>``, timestamps) are
sentencepiece user-defined symbols, so ``"<deu><asr><notimestamps> hallo"`` encodes as
``['▁', '<deu>', '<asr>', '<notimestamps>', '▁hallo']`` (ESPnet's S2T preprocessor drops
the leading ``'▁'``). The token list is ``<blank>``, ``<unk>``, the sentencepiece pieces,
then ``<sos>``, ``<eos>``, ``<sop>``, one per line.
"""

import logging
import os
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from espnet_gated.utils import atomic_write

#: OWSM's first and last timestamp tokens (ESPnet's S2T preprocessor looks them up);
#: the embedded corpora have no timestamps, so only these two are in the vocabulary.
TIME_SYMBOLS = ("<0.00>", "<30.00>")
HEAD_SYMBOLS = ("<blank>", "<unk>")
TAIL_SYMBOLS = ("<sos>", "<eos>", "<sop>")


def prefix_symbols(langs: Iterable[str], tasks: Iterable[str]) -> List[str]:
    """User-defined symbols for the given ISO-639-3 languages and task names."""
    return (
        ["<na>"] + [f"<{lang}>" for lang in langs] + [f"<{task}>" for task in tasks] + ["<notimestamps>", *TIME_SYMBOLS]
    )


def train_bpe(
    text_file: Path,
    out_dir: Path,
    vocab_size: int,
    symbols: Sequence[str],
    model_type: str = "bpe",
    character_coverage: float = 1.0,
) -> Tuple[Path, Path]:
    """Train ``out_dir/bpe.model`` on ``text_file`` and write ``out_dir/tokens.txt``.

    ``vocab_size`` counts the sentencepiece pieces including ``symbols``; if the text is
    too small for it, sentencepiece's own limit is used (logged) instead of failing.
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_prefix = out_dir / f".bpe.tmp{os.getpid()}"
    options = dict(
        input=str(text_file),
        model_prefix=str(tmp_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        user_defined_symbols=list(symbols),
        input_sentence_size=10_000_000,
        shuffle_input_sentence=True,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        minloglevel=2,
    )
    try:
        spm.SentencePieceTrainer.train(**options)
    except RuntimeError as e:  # "Vocabulary size is too high ... Please set it to a value <= N."
        message = str(e)
        if "Vocabulary size is too high" not in message:
            raise
        limit = int(message.rstrip(".").split("<=")[-1])
        logging.warning(f"sentencepiece: vocab_size {vocab_size} is too large for the text; using {limit}")
        spm.SentencePieceTrainer.train(**{**options, "vocab_size": limit})
    model_path = out_dir / "bpe.model"
    os.replace(f"{tmp_prefix}.model", model_path)
    os.replace(f"{tmp_prefix}.vocab", out_dir / "bpe.vocab")

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
    tokens = [*HEAD_SYMBOLS, *pieces, *TAIL_SYMBOLS]
    token_path = out_dir / "tokens.txt"
    atomic_write(token_path, "".join(t + "\n" for t in tokens))
    return model_path, token_path
