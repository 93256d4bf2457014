"""The built-in grammars, one module per language: a new language is a module with a
``GRAMMAR`` whose lexicon covers every concept of :mod:`espnet_gated.corpus.grammar`,
listed in :data:`GRAMMARS`."""

from typing import Dict

from espnet_gated.corpus.grammar import Grammar
from espnet_gated.corpus.languages import deu, eng, fra, ita, nld, por, spa

GRAMMARS: Dict[str, Grammar] = {module.GRAMMAR.code: module.GRAMMAR for module in (deu, eng, fra, ita, nld, por, spa)}
for _grammar in GRAMMARS.values():
    _grammar.check_lexicon()


def get_grammar(code: str) -> Grammar:
    """The grammar of ISO-639-3 ``code``; a ValueError lists the built-in ones otherwise."""
    if code not in GRAMMARS:
        raise ValueError(f"no built-in grammar for language '{code}'; built-in: {', '.join(sorted(GRAMMARS))}")
    return GRAMMARS[code]
