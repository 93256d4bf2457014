"""Model weights: read a state dict from an ESPnet model file, load it into a model with its keys checked.

ESPnet loads weights with ``strict=False`` and would silently keep random ones where a key does not fit.
:func:`load_checked` loads through the model's own ``load_state_dict``, so that the key upgrades of the
installed ESPnet apply first (202611 renames the input layer's ``encoder.embed.out.0.*`` of a 202511
checkpoint, every OWSM model included, to ``encoder.embed.out.*``), and then refuses what still does not
fit, naming it.
"""

import logging
from pathlib import Path
from typing import Dict, List, Sequence, Union

import torch

#: state-dict prefixes of the gating state: what a dense (ESPnet, OWSM) checkpoint lacks
GATING_STATE = ("gate_predictor.", "sparsity_controller.")
#: keys named in an error, at most
MAX_NAMED = 20


class WeightsError(ValueError):
    """A model file that cannot be read, or whose weights do not fit the model."""


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The state dict of an ESPnet model file (``*.pth``; also a trainer checkpoint's ``model`` entry, a
    DeepSpeed ``module``, DDP's ``module.`` prefixes), memory-mapped where the file allows it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not in the zip format: no mmap
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of torch.load
        raise WeightsError(f"{path}: cannot load the model file ({type(e).__name__}: {e})") from None
    for entry in ("model", "module"):
        if isinstance(state, dict) and isinstance(state.get(entry), dict):
            state = state[entry]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _names(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else ""
    return ", ".join(keys[:MAX_NAMED]) + more


def load_errors(error: RuntimeError) -> str:
    """torch's ``load_state_dict`` error (a line per key) as one line: which keys did not fit, and how."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    return _names(lines) if lines else str(error)


def load_checked(
    model: torch.nn.Module,
    state: Dict[str, torch.Tensor],
    source: Union[str, Path],
    built_from: Union[str, Path, None] = None,
    may_lack: Sequence[str] = GATING_STATE,
) -> List[str]:
    """Load ``state`` into ``model``; raise :class:`WeightsError` naming every key that does not fit
    (missing, unexpected, of another shape). Keys under ``may_lack`` may be missing (a dense checkpoint in a
    gated model keeps the gate predictor's initial state: every gate open); they are returned."""
    model_state = model.state_dict()
    reshaped = {k for k in set(state) & set(model_state) if state[k].shape != model_state[k].shape}
    model_name = f"the model built from {built_from}" if built_from else "the model"
    try:
        result = model.load_state_dict({k: v for k, v in state.items() if k not in reshaped}, strict=False)
    except RuntimeError as e:  # a shape mismatch of a key that ESPnet's upgrade renamed
        raise WeightsError(f"{source} does not fit {model_name}: {load_errors(e)}") from None
    fresh = [k for k in result.missing_keys if k.startswith(tuple(may_lack))]
    missing = [k for k in result.missing_keys if k not in reshaped and k not in fresh]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_names(missing)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys ({len(result.unexpected_keys)}): {_names(result.unexpected_keys)}")
    if reshaped:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(model_state[k].shape)}" for k in reshaped]
        problems.append(f"shape mismatches (file vs model) ({len(shapes)}): {_names(shapes)}")
    if problems:
        raise WeightsError(f"{source} does not fit {model_name}: " + "; ".join(problems))
    return fresh


def check_weights(model: torch.nn.Module, model_file, config_file=None) -> None:
    """Raise ValueError if ``model_file`` does not hold exactly the weights of ``model`` (loading them into
    it, with the installed ESPnet's key upgrades). A gated model may lack the gate predictor (a dense
    checkpoint: the predictor's initial state keeps every module); that is logged as a warning."""
    fresh = load_checked(model, read_state_dict(model_file), model_file, config_file)
    if fresh:
        logging.warning(f"{model_file} has no gate predictor weights: every gate stays open")
