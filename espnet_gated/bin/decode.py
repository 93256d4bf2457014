#!/usr/bin/env python3
r"""Stage 12 (decode): every test set, split over ``--nj`` parallel jobs, merged in key order.

Each job loads the model (once per ctc_weight) and decodes its shard (every nj-th utterance
in key order) of every test set with the set's own language and task (from utt2lang/utt2task).
Shards are written under ``<out_dir>/<set>/split<nj>/<job>/`` and marked done with what they
were decoded with (options, model file, wav.scp); the merged ``<out_dir>/<set>/1best_recog/*``
and ``<out_dir>/<set>/timing.json`` are written atomically once every shard is done. A killed
run redoes only the unfinished shards; a changed model, wav.scp or option that applies to a set
redoes that set. The console shows progress (rate, ETA) and warnings; ESPnet's beam-search log
goes to ``<out_dir>/logs/decode.<job>.log``.

Translation sets (task ``st_*``) are decoded with the decode config's ``st_ctc_weight`` (default 0)
as their ``ctc_weight``: the CTC learns the source transcript (``text.ctc``), not the translation.

``--system`` adds models decoded in the same jobs, interleaved set by set with the main one (the
order alternates from set to set), so that their decode times are measured side by side on the
same utterances and the same machine state: the recipe decodes the reference without pruning
this way next to the gated model (``gate_mode=all_open``), and the sparsity sweep all its runs.

Jobs: ``--job K`` (1..nj) decodes shard K only and ``--merge true`` merges once every shard is
done (an error names the missing ones): what the stage engine runs through its launcher
(``--decode_cmd``: local or Slurm, ``espnet_gated.recipe.launcher``). Without either, the nj jobs run
here (the local launcher) and are merged. With ``--ngpu 1`` each job decodes on its own device
(the launcher sets ``CUDA_VISIBLE_DEVICES`` per job; Slurm does with ``--gres``).

Usage:
    python -m espnet_gated.bin.decode --s2t_train_config exp/s2t/config.yaml \
        --s2t_model_file exp/s2t/valid.acc.ave.pth --decode_config conf/decode.yaml \
        --data_root dump/raw --sets "test_deu_asr test_deu_st_eng" --out_dir exp/s2t/decode --nj 2 \
        --system out_dir=exp/s2t_reference/decode,s2t_model_file=exp/s2t_reference/valid.acc.ave.pth,gate_mode=all_open
    # the same as jobs (e.g. on Slurm), then the merge
    python -m espnet_gated.bin.launch slurm --gpu 1 JOB=1:4 exp/s2t/decode/logs/launch.JOB.log \
        python -m espnet_gated.bin.decode ... --nj 4 --ngpu 1 --job JOB
    python -m espnet_gated.bin.decode ... --nj 4 --merge true
"""

import argparse
import logging
import sys
from pathlib import Path

from espnet_gated.cli import UsageError, entry_point, existing_dir, existing_file
from espnet_gated.configs import load_yaml
from espnet_gated.decoding.nbest_files import add_sparsity_options
from espnet_gated.recipe.decode_jobs import (
    BUDGET_REQUESTS,
    check_inputs,
    merge_shards,
    parse_system,
    run_job,
    unfinished_shards,
)
from espnet_gated.recipe.launcher import local_jobs, run_local
from espnet_gated.recipe.threads import choose_threads, thread_option


@entry_point
def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s2t_train_config", type=existing_file, required=True)
    parser.add_argument("--s2t_model_file", type=existing_file, required=True)
    parser.add_argument(
        "--decode_config",
        type=existing_file,
        help="YAML with Speech2Text options (beam_size, ctc_weight, ...); st_ctc_weight: ctc_weight of translation",
    )
    parser.add_argument("--data_root", type=existing_dir, required=True)
    parser.add_argument("--sets", required=True, help="space-separated test set names")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--nj", type=int, default=1)
    parser.add_argument("--ngpu", type=int, default=0, help="1: decode on a GPU (each job on its own)")
    parser.add_argument(
        "--system",
        action="append",
        default=[],
        help="another model decoded in the same jobs, interleaved set by set (repeatable): "
        "out_dir=DIR[,s2t_model_file=F][,s2t_train_config=F][,gate_mode=predicted|all_open][,sparsity=S]",
    )
    add_sparsity_options(parser)
    parser.add_argument(
        "--num_threads",
        type=thread_option,
        default=None,
        help="torch threads per job, or 'auto' (default: espnet_gated.recipe.threads' rule)",
    )
    parser.add_argument("--job", type=int, help="decode only this job's shard (1..nj), do not merge")
    parser.add_argument("--merge", type=lambda v: v.lower() == "true", default=False,
                        help="true: only merge the shards (every job must be done)")  # fmt: skip
    args = parser.parse_args(cmd)
    if args.nj < 1:
        parser.error(f"--nj {args.nj}: needs at least one job")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (decode) %(levelname)s: %(message)s")
    options = dict(beam_size=5, ctc_weight=0.0, st_ctc_weight=0.0, maxlenratio=0.0, minlenratio=0.0, nbest=1)
    if args.decode_config:
        options.update(load_yaml(args.decode_config))
    config, model = str(args.s2t_train_config), str(args.s2t_model_file)
    options.update(s2t_train_config=config, s2t_model_file=model, ngpu=args.ngpu)
    options.update({k: getattr(args, k) for k in BUDGET_REQUESTS if getattr(args, k)})
    sets = args.sets.split()
    if args.job is not None and not 1 <= args.job <= args.nj:
        raise UsageError(f"--job {args.job} is not one of the jobs 1..{args.nj}")
    systems = [{**options, "out_dir": str(args.out_dir)}] + [parse_system(s, options) for s in args.system]
    out_dirs = [Path(s["out_dir"]) for s in systems]
    if len(set(out_dirs)) != len(out_dirs):
        raise UsageError(f"every --system needs its own out_dir, got {[str(d) for d in out_dirs]}")
    if not args.merge:
        for system in systems:  # fail early, before any job starts
            check_inputs(system["s2t_train_config"], system["s2t_model_file"], str(args.data_root), sets)
        # a job launched with --job is alone in its process (the local launcher sets OMP_NUM_THREADS to its share)
        threads, why = choose_threads(1 if args.job is not None else args.nj, args.num_threads)
        if args.job is None:
            logging.info(f"{threads} torch intra-op thread(s) per job ({why})")
        if args.job is not None or args.nj == 1:
            run_job((args.job or 1) - 1, args.nj, systems, str(args.data_root), sets, threads)
            if args.job is not None:
                return
        else:
            command = [sys.executable, "-m", "espnet_gated.bin.decode", *(sys.argv[1:] if cmd is None else cmd)]
            log = str(args.out_dir / "logs" / "launch.JOB.log")
            run_local(local_jobs([*command, "--job", "JOB"], 1, args.nj, log, gpus_per_job=min(args.ngpu, 1)))
    missing = [shard for out_dir in out_dirs for shard in unfinished_shards(out_dir, sets, args.nj)]
    if missing:
        raise OSError(
            f"{len(missing)} shard(s) not decoded, e.g. {missing[0]} "
            f"(see {args.out_dir / 'logs'}; decode them with --job, then merge again)"
        )
    for out_dir in out_dirs:
        for name in sets:
            merge_shards(out_dir, name, args.nj)
            logging.info(f"{out_dir / name}: merged {args.nj} job(s)")


if __name__ == "__main__":
    main()
