#!/usr/bin/env python3
r"""Export a gated model with one fixed mask as a smaller, predictor-free model directory.

For a context-only gate predictor (``gate_conf: {use_audio: false}``) the mask of a
language-task pair is fixed, so the modules it closes can be dropped from the weights;
any model can also be exported with an explicit ``--mask``. The output directory holds
``config.yaml`` (ESPnet's plain ``model: espnet`` with ``encoder_conf.static_mask`` and
``decoder_conf.static_mask``), ``model.pth`` (no weights of closed modules, no gate
predictor), the files the model needs to decode, copied from the source model
(``tokens.txt``, ``bpe.model``, ``feats_stats.npz`` for global_mvn; config.yaml names them by
absolute path, as ESPnet's unpacked models do, and our loaders find them in the directory
if it is moved) and ``export.json`` (mask, sizes, source files). Decode it like the gated
model, with ``espnet_gated.bin.s2t_inference``, ``GatedSpeech2Text`` or
``GatedSpeech2Text.from_pretrained(out_dir)``: the hypotheses are those of the gated model
forced to the same mask. Details: ``espnet_gated/sharing/export.py``.

Usage:
    # the mask the predictor picks for German ASR (context-only predictor)
    python -m espnet_gated.bin.export \
        --s2t_train_config exp/s2t/config.yaml --s2t_model_file exp/s2t/valid.acc.ave.pth \
        --lang_sym deu --task_sym asr --out exp/s2t/export_deu_asr

    # an explicit mask (layers separated by dots; bits: enc ffn_macaron/attn/cgmlp/ffn, dec self/src/ffn)
    python -m espnet_gated.bin.export \
        --s2t_train_config exp/s2t/config.yaml --s2t_model_file exp/s2t/valid.acc.ave.pth \
        --mask "enc=1111.1011.1111.1101 dec=111.101.011" --out exp/s2t/export_fixed

    python -m espnet_gated.bin.s2t_inference --model_tag exp/s2t/export_deu_asr --lang_sym deu --task_sym asr ...
"""

import argparse
import logging

from espnet_gated.cli import entry_point


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a gated model with a fixed mask (closed modules and gate predictor removed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Usage:", 1)[1],
    )
    parser.add_argument("--s2t_train_config", required=True, help="config.yaml of the gated model")
    parser.add_argument("--s2t_model_file", default=None, help="its weights (.pth)")
    parser.add_argument("--lang_sym", default=None, help="language of the mask (e.g. deu), context-only predictor")
    parser.add_argument("--task_sym", default=None, help="task of the mask (e.g. asr)")
    parser.add_argument("--mask", default=None, help='explicit mask, e.g. "enc=1111.1011 dec=111.101"')
    parser.add_argument("--sparsity", default=None, help="a budgeted context-only predictor's budget for the mask")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--log_level", default="INFO")
    return parser


@entry_point
def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    from espnet_gated.sharing.export import export  # imports ESPnet (~10 s): after the options are checked

    summary = export(
        args.s2t_train_config, args.s2t_model_file, args.out, args.mask, args.lang_sym, args.task_sym, args.sparsity
    )
    p = summary["params"]
    logging.info(
        f"exported {summary['mask']} to {args.out}: {p['exported']:,} parameters "
        f"(gated model {p['gated']:,}, -{100 * (1 - p['exported'] / p['gated']):.1f}%), "
        f"{summary['bytes']['exported_model_file']:,} bytes"
    )


if __name__ == "__main__":
    main()
