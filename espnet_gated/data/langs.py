"""The one table from corpus language codes to OWSM's ISO-639-3 language tokens.

Corpora name languages their own way: ISO-639-1 (``de``), locales (``de_de``, ``de-DE``,
``pt-BR``, ``zh-CN``), FLEURS configs (``cmn_hans_cn``, ``es_419``) and Common Voice
locales (``sv-SE``, ``rm-sursilv``, ``nan-tw``). OWSM writes ``<deu>``, so every importer
maps through :func:`to_iso3`. Like OWSM (Whisper's codes through ISO-639-3), an
ISO-639-1 code that names a macrolanguage maps to the macrolanguage (``zh`` -> ``zho``,
``ar`` -> ``ara``, ``fa`` -> ``fas``), Mandarin (``cmn``) is ``zho`` and Norwegian is
Bokmål (``nob``).
"""

import difflib
from typing import Dict

#: ISO-639-1 (and Whisper's ``jw``, the old ``iw``) -> ISO-639-3
ISO1: Dict[str, str] = {
    "ab": "abk", "af": "afr", "am": "amh", "an": "arg", "ar": "ara", "as": "asm", "az": "aze", "ba": "bak", "be": "bel",
    "bg": "bul", "bn": "ben", "bo": "bod", "br": "bre", "bs": "bos", "ca": "cat", "ce": "che", "co": "cos", "cs": "ces",
    "cv": "chv", "cy": "cym", "da": "dan", "de": "deu", "dv": "div", "el": "ell", "en": "eng", "eo": "epo", "es": "spa",
    "et": "est", "eu": "eus", "fa": "fas", "ff": "ful", "fi": "fin", "fo": "fao", "fr": "fra", "fy": "fry", "ga": "gle",
    "gd": "gla", "gl": "glg", "gn": "grn", "gu": "guj", "ha": "hau", "he": "heb", "hi": "hin", "hr": "hrv", "ht": "hat",
    "hu": "hun", "hy": "hye", "ia": "ina", "id": "ind", "ig": "ibo", "is": "isl", "it": "ita", "iw": "heb", "ja": "jpn",
    "jv": "jav", "jw": "jav", "ka": "kat", "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "ku": "kur", "ky": "kir",
    "la": "lat", "lb": "ltz", "lg": "lug", "ln": "lin", "lo": "lao", "lt": "lit", "lv": "lav", "mg": "mlg", "mi": "mri",
    "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa", "mt": "mlt", "my": "mya", "nb": "nob", "ne": "nep",
    "nl": "nld", "nn": "nno", "no": "nob", "ny": "nya", "oc": "oci", "om": "orm", "or": "ori", "os": "oss", "pa": "pan",
    "pl": "pol", "ps": "pus", "pt": "por", "qu": "que", "rm": "roh", "ro": "ron", "ru": "rus", "rw": "kin", "sa": "san",
    "sc": "srd", "sd": "snd", "si": "sin", "sk": "slk", "sl": "slv", "sn": "sna", "so": "som", "sq": "sqi", "sr": "srp",
    "st": "sot", "su": "sun", "sv": "swe", "sw": "swa", "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "ti": "tir",
    "tk": "tuk", "tl": "tgl", "tn": "tsn", "tr": "tur", "tt": "tat", "tw": "twi", "ty": "tah", "ug": "uig", "uk": "ukr",
    "ur": "urd", "uz": "uzb", "vi": "vie", "wo": "wol", "xh": "xho", "yi": "yid", "yo": "yor", "zh": "zho", "zu": "zul",
}  # fmt: skip

#: three-letter corpus codes (FLEURS, Common Voice) that are ISO-639-3 already or need a different token
OTHER: Dict[str, str] = {
    "cmn": "zho",  # FLEURS cmn_hans_cn: Mandarin is OWSM's <zho>
    **{
        code: code
        for code in (
            "ast bas ceb ckb cnh dyu fil haw hsb kab kam kea kmr lij ltg luo mdf mhr mrj myv nan nhi nso quy "
            "sah sat skr tig tok umb vot yue zgh zza"
        ).split()
    },
}

#: full locales whose language part alone would map wrongly
LOCALES: Dict[str, str] = {
    "zh_hk": "yue",  # Common Voice zh-HK is Cantonese speech
}

_CODES: Dict[str, str] = {**ISO1, **OTHER, **LOCALES}
ISO3 = frozenset(_CODES.values())

#: languages written without spaces between words: scored by character error rate
CER_LANGS = frozenset({"zho", "yue", "jpn", "tha", "lao", "mya", "khm"})


def normalize_code(code: str) -> str:
    """``'<de-DE>'`` -> ``'de_de'``: the form the tables use."""
    return code.strip().strip("<>").lower().replace("-", "_")


def to_iso3(code: str) -> str:
    """ISO-639-3 token (without brackets) of a corpus language code.

    Tries the whole code, then its language part (``pt_br`` -> ``pt``,
    ``cmn_hans_cn`` -> ``cmn``); ISO-639-3 codes of the table map to themselves.
    """
    key = normalize_code(code)
    for candidate in (key, key.split("_")[0]):
        if candidate in _CODES:
            return _CODES[candidate]
        if candidate in ISO3:
            return candidate
    close = difflib.get_close_matches(key, sorted(set(_CODES) | ISO3), n=4)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(
        f"unknown language code '{code}': expected ISO-639-3 (deu), ISO-639-1 (de) or a corpus locale "
        f"(de_de, pt-BR, cmn_hans_cn){hint}; new languages go into espnet_gated/data/langs.py"
    )
