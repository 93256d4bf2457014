"""The embedded default corpus: sentence pairs from per-language grammars over shared
semantic frames (:mod:`.grammar`, :mod:`.languages`), spoken by espeak-ng (:mod:`.synth`),
written as Kaldi-style data dirs (:mod:`.embedded`)."""
