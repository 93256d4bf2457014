#!/usr/bin/env python3
r"""Run N copies of a command as parallel jobs, locally or on Slurm (what ESPnet's run.pl / slurm.pl do): the stage
engine's ``--decode_cmd`` and ``--train_cmd`` (``espnet_gated.recipe.launcher`` says what each backend does).

Usage:
    python -m espnet_gated.bin.launch local --gpu 1 JOB=1:4 exp/logs/decode.JOB.log \
        python -m espnet_gated.bin.decode ... --job JOB
    python -m espnet_gated.bin.launch slurm --partition gpu --gpu 1 JOB=1:4 exp/logs/decode.JOB.log -- \
        python -m espnet_gated.bin.decode ... --job JOB
    python -m espnet_gated.bin.launch local --dry_run JOB=1:2 log.JOB echo JOB   # print the jobs, run nothing
"""

import logging
from typing import List, Optional

from espnet_gated.cli import entry_point
from espnet_gated.recipe import launcher
from espnet_gated.recipe.launcher import launch


@entry_point
def main(cmd: Optional[List[str]] = None) -> None:
    if not cmd or cmd[0] in ("-h", "--help"):
        print(__doc__ + launcher.__doc__)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (launch) %(levelname)s: %(message)s")
    launch(cmd)


if __name__ == "__main__":
    main()
