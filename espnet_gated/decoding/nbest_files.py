"""Decoding a wav.scp into ESPnet's ``<n>best_recog/`` files (``text``, ``token``, ``token_int``, ``score``,
``text_nospecial``) plus each utterance's gate mask (``gates``) and identified language (``lang``): what
``espnet_gated.bin.s2t_inference`` and the recipe's decoding jobs run."""

import inspect
import logging
import time
from pathlib import Path
from typing import Dict, Optional

from espnet2.bin.s2t_inference import Speech2Text
from espnet2.fileio.datadir_writer import DatadirWriter

from espnet_gated.cli import UsageError
from espnet_gated.compat import Hypothesis, TooShortUttError
from espnet_gated.configs import load_yaml
from espnet_gated.data.symbols import token_kind
from espnet_gated.decoding.inference import GATED_OPTIONS, HALF_DTYPES, GatedSpeech2Text
from espnet_gated.decoding.language_id import wants_identification
from espnet_gated.method.layout import format_mask
from espnet_gated.method.sparsity import BudgetRequestError
from espnet_gated.plugin.tasks import GatedS2TTask, check_model_file, read_token_list
from espnet_gated.sharing.archive import is_archive
from espnet_gated.sharing.locate import PretrainedError, locate, recorded_files_missing, resolved_config_file
from espnet_gated.utils import Progress

#: batched decoding reads this many batches of utterances, sorts them by length (less padding) and decodes them
SORT_WINDOW_BATCHES = 8
#: Speech2Text's constructor arguments, taken from the parsed options by name
SPEECH2TEXT_ARGS = set(inspect.signature(Speech2Text.__init__).parameters) - {"self"} | set(GATED_OPTIONS)


def _count_keys(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def check_context_symbols(train_config: str, lang_sym: str, task_sym: str) -> None:
    """UsageError unless the model's token list has ``lang_sym`` (or it asks for language
    identification) and ``task_sym`` (``<deu>``, ``<asr>``); the message lists the language and
    task tokens it has."""
    tokens = read_token_list(load_yaml(train_config).get("token_list") or [])
    tasks = [t for t in tokens if token_kind(t) == "task"]
    langs = [t for t in tokens if token_kind(t) == "lang"]
    for option, sym in (("--lang_sym", lang_sym), ("--task_sym", task_sym)):
        if sym not in tokens and not (option == "--lang_sym" and wants_identification(sym)):
            raise UsageError(
                f"{option} {sym}: not in the token list of {train_config}; its languages: {' '.join(sorted(langs))}; "
                f"its tasks: {' '.join(sorted(tasks))}"
            )


def add_sparsity_options(parser) -> None:
    """``--sparsity``, ``--enc_sparsity``, ``--dec_sparsity``: the budget a budgeted model decodes at."""
    for name, what in (
        ("sparsity", "every budgeted side"),
        ("enc_sparsity", "the encoder"),
        ("dec_sparsity", "the decoder"),
    ):
        parser.add_argument(
            f"--{name}",
            default=None,
            help=f"skip rate asked of {what} of a model trained with sparsity_conf.budget (within its trained range)",
        )


def build_speech2text(options: dict, lang_sym: str, task_sym: str) -> GatedSpeech2Text:
    """GatedSpeech2Text from ESPnet-style decoding options (unknown keys are ignored): the model
    of ``model_tag`` (or of a packed ``s2t_model_file``), else of ``s2t_train_config`` and
    ``s2t_model_file``. A sparsity the model cannot give is a usage error (a bad option)."""
    try:
        return _build_speech2text(options, lang_sym, task_sym)
    except BudgetRequestError as e:
        raise UsageError(str(e)) from None


def _build_speech2text(options: dict, lang_sym: str, task_sym: str) -> GatedSpeech2Text:
    kwargs = {k: v for k, v in options.items() if k in SPEECH2TEXT_ARGS}
    # '<' and '>' are awkward on a command line: accept deu as well as <deu>
    kwargs.update(
        device="cuda" if options.get("ngpu", 0) >= 1 else "cpu",
        lang_sym=f"<{lang_sym.strip('<>')}>",
        task_sym=f"<{task_sym.strip('<>')}>",
    )
    config, model = kwargs.get("s2t_train_config"), kwargs.get("s2t_model_file")
    source = options.get("model_tag")
    if source is None and model is not None and config is None and (is_archive(model) or Path(model).is_dir()):
        source = kwargs.pop("s2t_model_file")
    if source is not None:
        return GatedSpeech2Text.from_pretrained(source, **kwargs)
    if config:  # before the model is loaded
        check_context_symbols(config, kwargs["lang_sym"], kwargs["task_sym"])
    if not (config and model) or not recorded_files_missing(config):
        if config and model:
            check_model_file(config, model)
        return GatedSpeech2Text(**kwargs)
    # a model directory that was moved (or an exported one): the files its config names are in it
    try:
        pre = locate(Path(config).parent, config, model)
    except PretrainedError as e:
        raise ValueError(str(e)) from None
    with resolved_config_file(pre) as resolved:
        check_model_file(resolved, model)
        return GatedSpeech2Text(**{**kwargs, "s2t_train_config": str(resolved)})


def decode_to_dir(
    speech2text: GatedSpeech2Text,
    wav_scp: str,
    output_dir: str,
    key_file: Optional[str] = None,
    nbest: int = 1,
    dtype: str = "float32",
    num_workers: int = 0,
    batch_size: int = 1,
) -> Dict[str, float]:
    """Decode the utterances of ``wav_scp`` (those in ``key_file`` if given) into
    ESPnet's ``<output_dir>/<n>best_recog/`` files plus our ``gates``; returns timing.

    ``batch_size > 1`` decodes that many utterances at once (``GatedSpeech2Text.decode_batch``:
    the same hypotheses as one at a time), sorted by length within windows of
    ``SORT_WINDOW_BATCHES`` batches. ``dtype``: of the audio read (half-precision decoding
    reads float32 audio; the model's dtype is ``speech2text``'s)."""
    loader = GatedS2TTask.build_streaming_iterator(
        [(wav_scp, "speech", "sound")],
        dtype="float32" if dtype in HALF_DTYPES else dtype,
        batch_size=1,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=GatedS2TTask.build_preprocess_fn(speech2text.s2t_train_args, False),
        collate_fn=GatedS2TTask.build_collate_fn(speech2text.s2t_train_args, False),
        inference=True,
    )
    timing = {"n_utts": 0, "wall_s": 0.0, "encoder_s": 0.0, "decoder_s": 0.0}
    progress = Progress(_count_keys(key_file or wav_scp))

    def decode(pending):
        """[(key, n-best results, mask or None, identified language or None)] for [(key, speech)];
        timing accumulated."""
        start = time.perf_counter()
        try:
            if len(pending) == 1:
                decoding = speech2text.decode(pending[0][1])
            else:
                decoding = speech2text.decode_batch([speech for _, speech in pending], batch_size=batch_size)
        except TooShortUttError as e:
            if len(pending) > 1:  # find the short one: one at a time
                return [d for p in pending for d in decode([p])]
            logging.warning(f"Utterance {pending[0][0]} {e}")
            hyp = Hypothesis(score=0.0, scores={}, states={}, yseq=[])
            return [(pending[0][0], [[" ", ["<space>"], [2], " ", hyp]] * nbest, None, None, None)]
        timing["wall_s"] += time.perf_counter() - start
        timing["encoder_s"] += decoding.timing["encoder_s"]
        timing["decoder_s"] += decoding.timing["decoder_s"]
        keys = [key for key, _ in pending]
        return [
            (*row, decoding.budget) for row in zip(keys, decoding.nbests, decoding.masks, decoding.langs, strict=True)
        ]

    with DatadirWriter(output_dir) as writer:

        def write(decoded):
            for key, results, mask, lang, budget in decoded:
                timing["n_utts"] += 1
                if mask is not None:
                    writer["1best_recog"]["gates"][key] = format_mask(*mask, budget=budget)
                if lang is not None:  # identified (--lang_sym none)
                    writer["1best_recog"]["lang"][key] = lang.strip("<>")
                for n, (text, token, token_int, text_nospecial, hyp) in enumerate(results[:nbest], 1):
                    best = writer[f"{n}best_recog"]
                    best["token"][key] = " ".join(token)
                    best["token_int"][key] = " ".join(map(str, token_int))
                    best["score"][key] = str(hyp.score)
                    if text is not None:
                        best["text"][key] = text
                    if text_nospecial is not None:
                        best["text_nospecial"][key] = text_nospecial
                progress.update()

        pending = []
        window = batch_size * SORT_WINDOW_BATCHES if batch_size > 1 else 1
        for keys, batch in loader:
            pending.append((keys[0], batch["speech"][0]))
            if len(pending) == window:
                write(decode(pending))
                pending = []
        if pending:
            write(decode(pending))
    progress.update(0, force=True)
    return timing
