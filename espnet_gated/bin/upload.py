#!/usr/bin/env python3
r"""Upload a pack to the Hugging Face hub (stage 16 of the stage engine).

The pack is unpacked under ``--work_dir`` and that directory is uploaded with huggingface_hub
(``pip install "espnet-gated[hub]"``; log in with ``hf auth login`` or set ``HF_TOKEN``) to the
model repository ``--hf_repo`` (created if needed). Exit status 0: uploaded; 3: not uploaded
(no huggingface_hub, offline, not logged in: the message says which), the pack and the unpacked
directory left ready for a later try; 1: bad input.

Usage:
    python -m espnet_gated.bin.upload --pack exp/s2t_train/s2t_train_valid.acc.ave.zip \
        --hf_repo user/gated-model --work_dir exp/hf_user_gated-model
"""

import argparse
import logging
import sys
from pathlib import Path

from espnet_gated.cli import entry_point, existing_file
from espnet_gated.sharing.archive import PackError, unpack, upload

NOT_UPLOADED = 3


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet_gated.bin.upload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pack", type=existing_file, required=True, help="the pack (.zip of espnet_gated.bin.pack)")
    parser.add_argument("--hf_repo", required=True, help="hub model repository, e.g. user/name")
    parser.add_argument("--work_dir", type=Path, required=True, help="where the pack is unpacked for the upload")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    return parser


@entry_point
def main(cmd=None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (upload) %(levelname)s: %(message)s")
    unpack(args.pack, args.work_dir)  # bad packs are errors (status 1), not "not uploaded"
    try:
        url = upload(args.pack, args.hf_repo, args.work_dir, private=args.private)
    except PackError as e:
        print(f"upload: {e}", file=sys.stderr)
        return NOT_UPLOADED
    logging.info(f"uploaded {args.pack} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
