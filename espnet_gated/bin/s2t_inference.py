#!/usr/bin/env python3
r"""Decode with a gated S2T model; same options as ``espnet2.bin.s2t_inference``.

Writes ESPnet's ``<output_dir>/<n>best_recog/{text,token,token_int,score,text_nospecial}``,
per utterance the gate mask it used in ``<output_dir>/1best_recog/gates``
(``<utt> enc=1111.1011... dec=111.101...``, see ``espnet_gated.method.layout.format_mask``), and
``<output_dir>/timing.json`` (utterances, wall, encoder and beam-search seconds).
For whole test sets split over parallel jobs, use ``espnet_gated.bin.decode``.

The model: ``--s2t_train_config``/``--s2t_model_file`` (paths the config names are also found
relative to its model directory, so a moved or exported model directory decodes), or
``--model_tag`` (as ESPnet's): a model directory, a packed model (.zip) or a Hugging Face hub
name; ``--s2t_model_file`` may also be a .zip. ``--lang_sym none`` identifies each utterance's
language first (``GatedSpeech2Text.identify_language``) and writes it to ``1best_recog/lang``
(``<utt> deu``, as ``utt2lang``).

``--batch_size N`` decodes N utterances at once (encoder and beam search batched; the
hypotheses of one at a time), sorting them by length within windows of
``SORT_WINDOW_BATCHES`` batches; ``--dtype bfloat16`` (CPU or GPU) or ``float16`` (GPU)
decodes in half precision with the gates of float32 decoding (``espnet_gated.decoding.inference``).

Usage:
    python -m espnet_gated.bin.s2t_inference \
        --s2t_train_config exp/s2t/config.yaml --s2t_model_file exp/s2t/valid.acc.ave.pth \
        --data_path_and_name_and_type dump/raw/test_deu_asr/wav.scp,speech,sound \
        --lang_sym deu --task_sym asr --beam_size 5 --output_dir exp/s2t/decode/test_deu_asr
    python -m espnet_gated.bin.s2t_inference --model_tag exp/s2t/s2t_valid.acc.ave.zip \
        --data_path_and_name_and_type wav.scp,speech,sound --lang_sym none --task_sym asr --output_dir decode_lid

    # 16 utterances at a time, in bfloat16, on a GPU
    python -m espnet_gated.bin.s2t_inference ... --batch_size 16 --dtype bfloat16 --ngpu 1
"""

import json
import logging
import sys
from pathlib import Path

from espnet2.bin.s2t_inference import get_parser as espnet_get_parser
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

from espnet_gated.cli import UsageError, entry_point
from espnet_gated.compat import get_commandline_args
from espnet_gated.decoding.inference import (
    DTYPES,
    GATE_MODES,
    UNSEEN_CONTEXT,
)
from espnet_gated.decoding.nbest_files import add_sparsity_options, build_speech2text, decode_to_dir
from espnet_gated.utils import atomic_write


def check_supported(args) -> None:
    if args.ngpu > 1:
        raise UsageError("only single-GPU decoding is supported; split the data with espnet_gated.bin.decode --nj")
    if getattr(args, "word_lm_train_config", None) is not None:
        raise UsageError("word LM is not implemented")


def inference(args) -> None:
    check_supported(args)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    set_all_random_seed(args.seed)
    if len(args.data_path_and_name_and_type) != 1 or args.data_path_and_name_and_type[0][1] != "speech":
        raise UsageError("give exactly one --data_path_and_name_and_type <wav.scp>,speech,sound")
    if not (args.model_tag or args.s2t_model_file):
        raise UsageError(
            "give the model: --s2t_train_config and --s2t_model_file, or --model_tag (dir, .zip, hub name)"
        )
    speech2text = build_speech2text(vars(args), args.lang_sym, args.task_sym)
    wav_scp = args.data_path_and_name_and_type[0][0]
    timing = decode_to_dir(
        speech2text, wav_scp, args.output_dir, args.key_file, args.nbest, args.dtype, args.num_workers, args.batch_size
    )
    atomic_write(Path(args.output_dir) / "timing.json", json.dumps(timing, indent=2))


def get_parser():
    parser = espnet_get_parser()
    parser.description = "Gated S2T decoding (espnet_gated)"
    for action in parser._actions:  # ESPnet's --dtype, with half precision under autocast
        if action.dest == "dtype":
            action.choices = list(DTYPES)
            action.help = "float32/float64: the model's dtype; bfloat16/float16: autocast, float32 gates"
    parser.add_argument(
        "--gate_mode",
        choices=GATE_MODES,
        default="predicted",
        help="predicted: the gate predictor's masks; all_open: keep every module (dense reference)",
    )
    parser.add_argument(
        "--unseen_context",
        choices=UNSEEN_CONTEXT,
        default="error",
        help="a language or task the gate predictor never trained on: error (refuse, naming the trained "
        "ones) or all_open (keep every module for those utterances)",
    )
    add_sparsity_options(parser)
    return parser


@entry_point
def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    inference(args)


if __name__ == "__main__":
    main()
