"""The S2T task used by espnet_gated's entry points.

It is ESPnet's ``S2TTask`` (same options, trainer and data pipeline); the gated classes
are found through the registration that importing any ``espnet_gated`` module does
(spawned DDP workers unpickle ``GatedS2TTask.main_worker`` and so import it). Two changes: the preprocessor
accepts ``speech_length: null`` (no padding to a fixed length), and the saved
``config.yaml`` lists every preprocessor option (ESPnet's ``Speech2Text`` reads the
timestamp symbols and the sampling rate from it).

For the gated model it also registers :meth:`GatedESPnetS2TModel.after_optimizer_update` on
ESPnet's optimizer, so the gate schedules and the sparsity multipliers count optimizer
updates (``accum_grad`` forward passes make one; a step skipped for a non-finite gradient
makes none), and after training it takes the gate predictor and the sparsity controller of each
average's best checkpoint (``keep_nbest_models`` > 1; :func:`keep_gating_state_of_the_best`).
"""

import argparse
import inspect
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from espnet2.tasks.s2t import S2TTask
from espnet2.train.preprocessor import S2TPreprocessor
from espnet2.train.trainer import Trainer

from espnet_gated.cli import UsageError
from espnet_gated.compat import NEWER_PREPROCESSOR_OPTIONS
from espnet_gated.configs import load_yaml
from espnet_gated.data.datadir import check_context_tokens, read_entries
from espnet_gated.data.tokenizer import unk_report
from espnet_gated.method.model import GatedESPnetS2TModel
from espnet_gated.plugin.preprocessor import natural_length, with_natural_length
from espnet_gated.plugin.registry import register
from espnet_gated.plugin.weights import GATING_STATE, read_state_dict
from espnet_gated.utils import atomic_output

register()  # ESPnet's S2TTask (and so GatedS2TTask and DDP workers) finds the gated classes by name

#: state-dict entries whose first dimension is the vocabulary size
VOCAB_SIZED = ("decoder.output_layer.weight", "decoder.embed.0.weight", "ctc.ctc_lo.weight")


def preprocessor_defaults() -> Dict[str, object]:
    """S2TPreprocessor's keyword defaults that a config may set (not the task-level ones, and not the
    options that only a newer ESPnet knows: a config saved with them would not load under 202511)."""
    task_level = {
        "train",
        "token_type",
        "token_list",
        "bpemodel",
        "text_cleaner",
        "g2p_type",
        "non_linguistic_symbols",
        "rir_scp",
        "rir_apply_prob",
        "noise_scp",
        "noise_apply_prob",
        "noise_db_range",
        "short_noise_thres",
        "speech_volume_normalize",
    }
    skipped = task_level | set(NEWER_PREPROCESSOR_OPTIONS)
    params = inspect.signature(S2TPreprocessor.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty and p.name not in skipped}


def read_token_list(value: Union[str, Path, List[str]]) -> List[str]:
    if isinstance(value, (str, Path)):
        with open(value, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    return list(value)


def check_training_data(args: argparse.Namespace) -> None:
    """Checks of the training/validation data before ESPnet starts.

    * every data and shape file exists (FileNotFoundError naming the option);
    * every ``<lang><task>`` prefix of a ``text`` file is in the token list (ValueError);
    * with a BPE model: characters the model cannot represent are counted per
      utterance and reported in one warning (they become ``<unk>`` targets).
    """
    for option in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
        for path, _, _ in getattr(args, option, None) or []:
            if not Path(path).exists():
                raise FileNotFoundError(f"--{option} {path}: file not found")
    for option in ("train_shape_file", "valid_shape_file"):
        for path in getattr(args, option, None) or []:
            if not Path(path).exists():
                raise FileNotFoundError(f"--{option} {path}: file not found")
    if getattr(args, "token_list", None) is None:
        return
    tokens = read_token_list(args.token_list)
    bpemodel = args.bpemodel if getattr(args, "token_type", None) == "bpe" else None
    for option in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type"):
        for path, name, dtype in getattr(args, option, None) or []:
            if dtype != "text" or name not in ("text", "text_ctc"):
                continue
            if name == "text":
                check_context_tokens(path, tokens, where=f"--token_list {args.token_list}")
            if bpemodel:
                report = unk_report(bpemodel, ((key, value) for _, key, value in read_entries(Path(path))))
                if report.n_unk:
                    logging.warning(report.summary(f"{path} (--bpemodel {bpemodel})"))


def schedule_mismatch(args: argparse.Namespace) -> Optional[str]:
    """Why a linear LR schedule does not end where training does, or None.

    ``piecewiselinearwarmuplr`` holds its last rate after the last listed step, so a run
    longer than the list trains its tail at the final (near-zero) rate, and a shorter one
    stops before the rate has decayed. Only checkable with a fixed ``num_iters_per_epoch``.
    """
    if getattr(args, "scheduler", None) != "piecewiselinearwarmuplr" or not getattr(args, "num_iters_per_epoch", None):
        return None
    steps = (getattr(args, "scheduler_conf", None) or {}).get("warmup_steps_list")
    total = args.max_epoch * args.num_iters_per_epoch
    if not steps or steps[-1] == total:
        return None
    return (
        f"scheduler_conf.warmup_steps_list ends at step {steps[-1]} but training runs "
        f"max_epoch x num_iters_per_epoch = {args.max_epoch} x {args.num_iters_per_epoch} = {total} steps"
    )


def check_model_file(config_file: Union[str, Path], model_file: Union[str, Path]) -> None:
    """Raise ValueError if ``model_file`` was not trained with ``config_file``'s token list.

    ESPnet loads weights with ``strict=False`` but a vocabulary of another size fails
    deep inside ``load_state_dict``; this names both files and both sizes instead.
    """
    config = load_yaml(config_file)
    if config.get("token_list") is None:
        raise ValueError(f"{config_file}: no token_list (is it the config.yaml saved by training?)")
    n_tokens = len(read_token_list(config["token_list"]))
    state = read_state_dict(model_file)  # memory-mapped: only the few tensors looked at are read
    for key in VOCAB_SIZED:
        if key in state and state[key].shape[0] != n_tokens:
            raise ValueError(
                f"{model_file} was trained with {state[key].shape[0]} tokens ({key}) but the token_list "
                f"of {config_file} has {n_tokens}: decode with the config.yaml saved next to the model"
            )


def count_updates(model: GatedESPnetS2TModel, optimizer: torch.optim.Optimizer):
    """Call ``model.after_optimizer_update()`` after every step of ``optimizer`` (only steps
    that happen: AMP's scaler skips the step of a non-finite gradient); returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: model.after_optimizer_update())


@contextmanager
def atomic_torch_save():
    """Inside the block, ``torch.save(obj, path)`` writes a temporary file and renames it,
    so a run killed while saving leaves the previous checkpoint, never a truncated one."""
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return original(obj, f, *args, **kwargs)
        with atomic_output(f, "wb") as out:
            original(obj, out, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def keep_gating_state_of_the_best(output_dir: Path, best_model_criterion: Sequence[Sequence[str]], nbest) -> None:
    """In every average of n > 1 checkpoints that ESPnet's trainer wrote, the gate predictor and the sparsity
    controller of that average's best checkpoint instead of their average.

    An averaged predictor would give masks that no checkpoint ever used (the keep decision is a sign, not a
    smooth function of the weights), ESPnet sums integer buffers (the update counter, the trained-context
    counts) instead of averaging them, and averaged multipliers belong to no training state. The averaged
    backbone with the best checkpoint's predictor is the usual compromise: the backbone average is close to
    each of its members. The best epochs come from the reporter of ``checkpoint.pth``; an average of the
    first ``e`` epochs (``till<e>epoch``) takes the best of those epochs.
    """
    from espnet2.train.reporter import Reporter

    checkpoint = output_dir / "checkpoint.pth"
    if not checkpoint.is_file():
        return
    reporter = Reporter()
    reporter.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["reporter"])
    nbests = [nbest] if isinstance(nbest, int) else list(nbest)
    for phase, key, mode in best_model_criterion:
        if not reporter.has(phase, key):
            continue
        ranked = reporter.sort_epochs_and_values(phase, key, mode)
        for path in sorted(output_dir.glob(f"{phase}.{key}.ave_*best*.pth")):
            match = AVERAGE_NAME.fullmatch(path.name[len(f"{phase}.{key}.") :])
            if match is None or path.is_symlink() or int(match["n"]) not in nbests or int(match["n"]) <= 1:
                continue
            till = int(match["till"]) if match["till"] else None
            best = next(epoch for epoch, _ in ranked if till is None or epoch <= till)
            best_file = output_dir / f"{best}epoch.pth"
            if not best_file.is_file():
                logging.warning(f"{path}: {best_file} (its best checkpoint) is gone: the gating state stays averaged")
                continue
            gating = {
                k: v for k, v in torch.load(best_file, map_location="cpu", weights_only=False).items()
                if k.startswith(GATING_STATE)
            }  # fmt: skip
            if gating:
                averaged = torch.load(path, map_location="cpu", weights_only=False)
                averaged.update(gating)
                with atomic_output(path, "wb") as f:
                    torch.save(averaged, f)
                logging.info(f"{path}: gate predictor and sparsity controller of epoch {best} (not averaged)")


#: the names of ESPnet's averaged checkpoints after ``<phase>.<key>.``
AVERAGE_NAME = re.compile(r"ave_(?P<n>\d+)best(?:\.till(?P<till>\d+)epoch)?\.pth")


class AtomicCheckpointTrainer(Trainer):
    """ESPnet's trainer; checkpoint.pth, <n>epoch.pth and the averaged models are written atomically (ESPnet
    writes them in place, and ``--resume true`` after a kill during that write would fail on a truncated
    checkpoint)."""

    @classmethod
    def run(cls, *args, **kwargs) -> None:
        # a patch, not a hook: ESPnet's trainer writes its checkpoints with torch.save and has no hook for how
        with atomic_torch_save():
            super().run(*args, **kwargs)


class GatedS2TTask(S2TTask):
    trainer = AtomicCheckpointTrainer

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd: Optional[Sequence[str]] = None):
        """ESPnet's main; the checks of the options and data are the entry point's (espnet_gated.bin.s2t_train)."""
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        if getattr(args, "preprocessor", None) == "s2t":
            args.preprocessor_conf = {**preprocessor_defaults(), **(args.preprocessor_conf or {})}
        super().main(args=args)
        trained = not args.collect_stats and not getattr(args, "use_deepspeed", False) and args.output_dir
        if trained and args.model == "gated_espnet":  # a post-step on what ESPnet's averaging wrote
            keep_gating_state_of_the_best(Path(args.output_dir), args.best_model_criterion, args.keep_nbest_models)

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        """ESPnet's optimizer; for the gated model, each update also advances its schedules."""
        optimizers = super().build_optimizers(args, model)
        if isinstance(model, GatedESPnetS2TModel):
            count_updates(model, optimizers[0])
        return optimizers

    @classmethod
    def check_required_command_args(cls, args: argparse.Namespace) -> None:
        """ESPnet prints its whole help (hundreds of lines) above the missing options; name them only."""
        missing = [f"--{name}" for name in args.required if getattr(args, name) is None]
        if missing:
            raise UsageError(f"the following arguments are required: {', '.join(missing)} (see --help)")
        super().check_required_command_args(args)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not (args.use_preprocessor and natural_length(args)):
            return super().build_preprocess_fn(args, train)
        return super().build_preprocess_fn(with_natural_length(args), train)
