"""Token-list surgery for new languages and tasks (``init_from --add_langs/--add_tasks``).

A new token is inserted into the token list's block of language (``<abk>`` .. ``<zul>`` in OWSM) or task
(``<asr>``, ``<st_*>``) tokens at its alphabetical place, as OWSM keeps them, so that ESPnet's language
identification (``s2t_inference_language``, which scores the range ``--first_lang_sym`` .. ``--last_lang_sym``)
still covers every language; a code sorting before the first or after the last language extends the block at
that end (then pass the new first/last symbol to it). ``<sos>``, ``<eos>`` and ``<sop>`` stay last. The
sentencepiece model gains the token as a user-defined symbol. The rows of the decoder embedding, the output
layer and the CTC layer (and of the gate predictor's context embeddings, for a gated source) are re-indexed
by token, so every old token keeps its weights and its output; a new token's rows are the mean of the rows of
its kind (languages or tasks), or a copy of a given token's rows (``xyz=deu``).
"""

import logging
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from espnet_gated.data.langs import to_iso3
from espnet_gated.data.symbols import CONTEXT_TOKEN, TASK, token_kind
from espnet_gated.sharing.locate import PretrainedError
from espnet_gated.utils import atomic_output

#: parameters with one row per token
VOCAB_PARAMS = (
    "decoder.embed.0.weight",
    "decoder.output_layer.weight",
    "decoder.output_layer.bias",
    "ctc.ctc_lo.weight",
    "ctc.ctc_lo.bias",
)
#: gate predictor parameters with one row per context token (plus row 0), for gated sources
CONTEXT_PARAMS = ("gate_predictor.lang_embed.weight", "gate_predictor.task_embed.weight")
#: per context row, the training utterances the gate predictor saw (a new token without a template: none)
CONTEXT_COUNTS = "gate_predictor.context_counts"


def _code(code: str) -> str:
    code = code.strip().strip("<>").lower()
    if re.fullmatch(r"[a-z]{3}", code):
        return code
    try:
        return to_iso3(code)
    except ValueError as e:
        raise PretrainedError(f"language '{code}': {e} (a new language needs an ISO-639-3 code like xyz)") from None


def parse_new_tokens(langs: Iterable[str] = (), tasks: Iterable[str] = ()) -> List[Tuple[str, str, Optional[str]]]:
    """``xyz`` or ``xyz=deu`` (languages) and ``st_xyz`` or ``st_xyz=st_deu`` (tasks) ->
    (kind, token, template token or None)."""
    out = []
    for kind, items in (("lang", langs), ("task", tasks)):
        for item in items:
            if not item.strip():
                continue
            name, _, template = item.partition("=")
            if kind == "lang":
                token, tmpl = f"<{_code(name)}>", template and f"<{_code(template)}>"
            else:
                name, template = name.strip().strip("<>").lower(), template.strip().strip("<>").lower()
                if name.startswith("st_"):
                    name = f"st_{_code(name[3:])}"
                if not TASK.match(name):
                    raise PretrainedError(f"task '{name}': expected asr or st_<lang> like st_xyz")
                token, tmpl = f"<{name}>", template and f"<{template}>"
            out.append((kind, token, tmpl or None))
    return out


def _longest_run(indices: List[int]) -> List[int]:
    """The longest run of consecutive indices (the block; a stray look-alike piece elsewhere is not in it)."""
    runs: List[List[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return max(runs, key=len) if runs else []


def insert_tokens(tokens: Sequence[str], new: Sequence[Tuple[str, str, Optional[str]]]) -> Tuple[List[str], List[str]]:
    """The token list with the new tokens in their blocks (see the module docstring); returns
    (new list, tokens actually added). Tokens already present are left where they are."""
    out = list(tokens)
    added = []
    for kind, token, _ in sorted(new, key=lambda x: x[1]):
        if token in out:
            logging.info(f"{token} is already in the token list")
            continue
        block = _longest_run([i for i, t in enumerate(out) if token_kind(t) == kind])
        if not block:
            raise PretrainedError(f"cannot add {token}: the token list has no {kind} tokens (not OWSM-style)")
        after = [i for i in block if out[i] > token]
        out.insert(after[0] if after else block[-1] + 1, token)
        added.append(token)
    for tail in ("<sos>", "<eos>", "<sop>"):
        if tail in out and any(token_kind(t) for t in out[out.index(tail) :]):
            raise PretrainedError(f"the token list has language/task tokens after {tail}")
    return out, added


def extend_bpemodel(src: Path, dst: Path, tokens: Sequence[str]) -> None:
    """Copy the sentencepiece model, adding ``tokens`` as user-defined symbols."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    proto = sp_pb2.ModelProto()
    try:
        proto.ParseFromString(src.read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise PretrainedError(f"{src}: not a sentencepiece model ({e})") from None
    if not tokens:
        with atomic_output(dst, "wb") as f:
            f.write(src.read_bytes())
        return
    pieces = {p.piece: p for p in proto.pieces}
    for token in tokens:
        if token in pieces:
            if pieces[token].type != sp_pb2.ModelProto.SentencePiece.USER_DEFINED:
                raise PretrainedError(f"{src}: has {token} as an ordinary piece, not as a user-defined symbol")
            continue
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = token, 0.0, sp_pb2.ModelProto.SentencePiece.USER_DEFINED
        proto.trainer_spec.user_defined_symbols.append(token)
    data = proto.SerializeToString()
    sp = spm.SentencePieceProcessor(model_proto=data)
    for token in tokens:
        pieces = sp.encode_as_pieces(f"{token}<notimestamps> x")
        if token not in pieces:
            raise PretrainedError(f"{src}: {token} does not encode as one piece after adding it ({pieces})")
    with atomic_output(dst, "wb") as f:
        f.write(data)


def _new_row(rows: torch.Tensor, old_index: Dict[str, int], kind: str, template: Optional[str]) -> torch.Tensor:
    if template is not None:
        if template not in old_index:
            raise PretrainedError(f"template token {template} is not in the pretrained token list")
        return rows[old_index[template]]
    same = [i for t, i in old_index.items() if token_kind(t) == kind]
    return rows[same].float().mean(0).to(rows.dtype)


def remap_rows(
    state: Dict[str, torch.Tensor],
    old: Sequence[str],
    new: Sequence[str],
    templates: Dict[str, Optional[str]],
) -> Dict[str, torch.Tensor]:
    """Re-index the per-token rows of ``state`` from token list ``old`` to ``new`` (a superset)."""
    state = dict(state)
    kinds = {t: token_kind(t) for t in new}

    def remap(key: str, old_tokens: Sequence[str], new_tokens: Sequence[str], offset: int) -> None:
        rows = state[key]
        unseen = torch.zeros_like(rows[0])
        if rows.size(0) != len(old_tokens) + offset:
            raise PretrainedError(
                f"{key}: {rows.size(0)} rows, the pretrained token list implies {len(old_tokens) + offset}"
            )
        index = {t: i + offset for i, t in enumerate(old_tokens)}
        parts = [rows[:offset]]
        for t in new_tokens:
            if t in index:
                row = rows[index[t]]
            elif key == CONTEXT_COUNTS and templates.get(t) is None:
                row = unseen
            else:
                row = _new_row(rows, index, kinds[t], templates.get(t))
            parts.append(row[None])
        state[key] = torch.cat(parts, 0).contiguous()

    for key in VOCAB_PARAMS:
        if key in state:
            remap(key, old, new, 0)
    old_ctx = [t for t in old if CONTEXT_TOKEN.match(t)]
    new_ctx = [t for t in new if CONTEXT_TOKEN.match(t)]
    for key in (*CONTEXT_PARAMS, CONTEXT_COUNTS):
        if key in state:
            remap(key, old_ctx, new_ctx, 1)
    return state
