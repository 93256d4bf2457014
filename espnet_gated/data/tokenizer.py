"""Sentencepiece model and ESPnet token list in the OWSM layout.

The prefix tokens (``<na>``, languages, tasks, ``<notimestamps>``, timestamps) are
sentencepiece user-defined symbols, so ``"<deu><asr><notimestamps> hallo"`` encodes as
``['▁', '<deu>', '<asr>', '<notimestamps>', '▁hallo']`` (ESPnet's S2T preprocessor drops
the leading ``'▁'``). The token list is ``<blank>``, ``<unk>``, the sentencepiece pieces,
then ``<sos>``, ``<eos>``, ``<sop>``, one per line.
"""

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from espnet_gated.utils import PathLike, atomic_write

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
    except RuntimeError as e:  # "Vocabulary size too high (M). Please set it to a value <= N."
        message = str(e)
        too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
        if too_small:
            raise ValueError(
                f"{text_file}: a vocabulary of {vocab_size} cannot hold the {too_small.group(2)} characters and "
                f"symbols of the text: use at least {too_small.group(2)} (--nbpe)"
            ) from None
        if not re.search(r"Vocabulary size (is )?too high", message):
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


@dataclass
class UnkReport:
    """How much of a text the sentencepiece model maps to ``<unk>``."""

    n_utts: int = 0
    n_pieces: int = 0
    n_unk: int = 0
    utts_with_unk: Dict[str, int] = field(default_factory=dict)  # utterance -> <unk> pieces
    chars: Counter = field(default_factory=Counter)  # character outside the model -> occurrences

    @property
    def rate(self) -> float:
        return self.n_unk / max(self.n_pieces, 1)

    def summary(self, what: str) -> str:
        worst = sorted(self.utts_with_unk.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        chars = ", ".join(f"{c!r} x{n}" for c, n in self.chars.most_common(10))
        return (
            f"{what}: {len(self.utts_with_unk)} of {self.n_utts} utterance(s) contain characters outside the "
            f"BPE model ({self.n_unk} <unk> of {self.n_pieces} pieces, {100 * self.rate:.2f}%); "
            f"characters: {chars}; most <unk> in: " + ", ".join(f"{u} ({n})" for u, n in worst)
        )


def unk_report(bpemodel: PathLike, texts: Iterable[Tuple[str, str]]) -> UnkReport:
    """Count ``<unk>`` pieces per utterance of ``(utt_id, text)`` pairs."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(bpemodel))
    unk = sp.unk_id()
    report = UnkReport()
    texts = list(texts)
    # batched (sentencepiece uses its threads); the pieces carry the text they cover
    encoded = sp.encode([text for _, text in texts], out_type="immutable_proto")
    for (utt, _), proto in zip(texts, encoded, strict=True):
        report.n_utts += 1
        report.n_pieces += len(proto.pieces)
        unknown = [p.surface for p in proto.pieces if p.id == unk]
        if unknown:
            report.n_unk += len(unknown)
            report.utts_with_unk[utt] = report.utts_with_unk.get(utt, 0) + len(unknown)
            report.chars.update(c for surface in unknown for c in surface)
    return report
