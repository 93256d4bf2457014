#!/usr/bin/env python3
"""Decode with a gated S2T model; same options as ``espnet2.bin.s2t_inference``.

Writes ESPnet's ``<output_dir>/<n>best_recog/{text,token,token_int,score,text_nospecial}``
and, per utterance, the gate mask it used in ``<output_dir>/1best_recog/gates``
(``<utt> enc=1111.1011... dec=111.101...``, see ``espnet_gated.layout.format_mask``).

Usage:
    python -m espnet_gated.bin.s2t_inference \
        --s2t_train_config exp/s2t/config.yaml --s2t_model_file exp/s2t/valid.acc.ave.pth \
        --data_path_and_name_and_type dump/raw/test_deu_asr/wav.scp,speech,sound \
        --lang_sym deu --task_sym asr --beam_size 5 --output_dir exp/s2t/decode/test_deu_asr
"""

import inspect
import logging
import sys

from espnet.nets.beam_search import Hypothesis
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError
from espnet.utils.cli_utils import get_commandline_args
from espnet2.bin.s2t_inference import Speech2Text
from espnet2.bin.s2t_inference import get_parser as espnet_get_parser
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

from espnet_gated.inference import GatedSpeech2Text, Progress
from espnet_gated.layout import format_mask
from espnet_gated.tasks import GatedS2TTask

#: Speech2Text's constructor arguments, taken from the parsed options by name
SPEECH2TEXT_ARGS = set(inspect.signature(Speech2Text.__init__).parameters) - {"self"}


def _count_keys(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def inference(args) -> None:
    if args.batch_size > 1:
        raise NotImplementedError("batch decoding: use --batch_size 1")
    if args.ngpu > 1:
        raise NotImplementedError("only single-GPU decoding is supported; split the data with --nj")
    if args.word_lm_train_config is not None:
        raise NotImplementedError("word LM is not implemented")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    set_all_random_seed(args.seed)
    # '<' and '>' are awkward on a command line: accept deu as well as <deu>
    lang_sym = f"<{args.lang_sym.strip('<>')}>"
    task_sym = f"<{args.task_sym.strip('<>')}>"
    kwargs = {k: v for k, v in vars(args).items() if k in SPEECH2TEXT_ARGS}
    kwargs.update(device="cuda" if args.ngpu >= 1 else "cpu", lang_sym=lang_sym, task_sym=task_sym)
    speech2text = GatedSpeech2Text(**kwargs)

    loader = GatedS2TTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=1,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=GatedS2TTask.build_preprocess_fn(speech2text.s2t_train_args, False),
        collate_fn=GatedS2TTask.build_collate_fn(speech2text.s2t_train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    progress = Progress(_count_keys(args.key_file or args.data_path_and_name_and_type[0][0]))
    with DatadirWriter(args.output_dir) as writer:
        for keys, batch in loader:
            key = keys[0]
            batch = {k: v[0] for k, v in batch.items() if not k.endswith("_lengths")}
            try:
                results = speech2text(**batch)
                mask = speech2text.last_mask
            except TooShortUttError as e:
                logging.warning(f"Utterance {key} {e}")
                hyp = Hypothesis(score=0.0, scores={}, states={}, yseq=[])
                results, mask = [[" ", ["<space>"], [2], " ", hyp]] * args.nbest, None
            if isinstance(results, tuple):  # intermediate CTC outputs are not written
                results = results[0]
            for n, (text, token, token_int, text_nospecial, hyp) in enumerate(results[: args.nbest], 1):
                best = writer[f"{n}best_recog"]
                best["token"][key] = " ".join(token)
                best["token_int"][key] = " ".join(map(str, token_int))
                best["score"][key] = str(hyp.score)
                if text is not None:
                    best["text"][key] = text
                if text_nospecial is not None:
                    best["text_nospecial"][key] = text_nospecial
            if mask is not None:
                writer["1best_recog"]["gates"][key] = format_mask(*mask)
            progress.update()
    progress.update(0, force=True)


def get_parser():
    parser = espnet_get_parser()
    parser.description = "Gated S2T decoding (espnet_gated)"
    return parser


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    inference(args)


if __name__ == "__main__":
    main()
