"""The language and task symbols of the S2T prompt (``<sos><lang><task><notimestamps>``): every pattern that
reads language or task names, or their tokens, lives here."""

import re
from typing import Optional

#: a language name: ISO 639-3, as OWSM's tokens (``deu``)
LANG = re.compile(r"^[a-z]{3}$")
#: a task name: recognition, or translation into a language (``asr``, ``st_eng``)
TASK = re.compile(r"^(asr|st_[a-z]{3})$")
#: what a ``<lang>`` or ``<task>`` token may be named (also a task name of a per-task sparsity target)
CONTEXT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: the bracketed lower-case tokens the gate predictor embeds as context (``<deu>``, ``<st_eng>``; not ``<0.00>``)
CONTEXT_TOKEN = re.compile(r"^<[a-z][a-z0-9_]*>$")
#: the prompt at the start of a target text: ``<lang><task><notimestamps>`` (groups: the two names)
PREFIX = re.compile(r"^<([a-z][a-z0-9_]*)><([a-z][a-z0-9_]*)><notimestamps> ?")
#: the two tokens at the start of any target text, whatever they are (to name a bad one)
CONTEXT = re.compile(r"^(<[^<>\s]+>)(<[^<>\s]+>)")
#: three-letter special tokens that are not languages
NOT_LANGUAGES = frozenset({"<unk>", "<asr>", "<sos>", "<eos>", "<sop>"})


def token_kind(token: str) -> Optional[str]:
    """``"lang"`` for a language token (``<deu>``), ``"task"`` for a task token (``<st_eng>``), else None."""
    if token.startswith("<") and token.endswith(">"):
        name = token[1:-1]
        if TASK.match(name):
            return "task"
        if LANG.match(name) and token not in NOT_LANGUAGES:
            return "lang"
    return None
