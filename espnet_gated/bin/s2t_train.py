#!/usr/bin/env python3
r"""Train a gated S2T model with ESPnet's trainer (same options as ``espnet2.bin.s2t_train``).

Usage:
    python -m espnet_gated.bin.s2t_train --config conf/train.yaml \
        --token_list data/token_list/bpe/tokens.txt --bpemodel data/token_list/bpe/bpe.model \
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type dump/raw/train/text,text,text \
        --train_shape_file exp/stats/train/speech_shape --output_dir exp/s2t
    python -m espnet_gated.bin.s2t_train --print_config --model gated_espnet \
        --encoder gated_e_branchformer --decoder gated_transformer
"""

from espnet_gated.tasks import GatedS2TTask


def get_parser():
    return GatedS2TTask.get_parser()


def main(cmd=None):
    GatedS2TTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
