"""Distillation from the dense model during the gated fine-tuning (``model_conf: distill_conf``).

Structured pruning keeps quality by learning from the unpruned model: CoFi (Xia et al., ACL 2022) and
Sheared-LLaMA distil the dense model's token distributions into the pruned one. Here the teacher is a
dense model, frozen: the recipe's stage 11 sets it (``--distill_teacher``: ``reference``, the reference
fine-tuned first, by default; ``start``, the model the fine-tuning starts from); the
gated decoder's attention loss becomes ``loss_att + weight * loss_distill`` (weighted ``1 - ctc_weight``
in the loss, as ``loss_att`` is), where ``loss_distill`` is the token-level KL divergence from the
teacher's to the student's output distribution at temperature ``temperature`` (times ``temperature**2``,
Hinton et al.), on the positions the attention loss counts and normalised as it is
(``length_normalized_loss``).

The teacher is loaded on the first training forward (a model built for decoding, or for ESPnet's
statistics collection, never loads it, so a config without the teacher's files builds) and is not part
of the model's state: it is not saved, averaged or trained. A gated teacher runs with every module open.
"""

import math
from pathlib import Path
from typing import Dict, Optional

import torch

#: distill_conf keys and their defaults (``teacher_config`` and ``teacher_model``: needed to train, set by the recipe)
DISTILL_DEFAULTS = {"teacher_config": None, "teacher_model": None, "weight": 1.0, "temperature": 1.0}


def check_distill_conf(conf: Optional[Dict]) -> Optional[Dict]:
    """A completed copy of ``model_conf.distill_conf`` (None: no distillation); ValueError naming what is wrong."""
    if not conf:
        return None
    unknown = sorted(set(conf) - set(DISTILL_DEFAULTS))
    if unknown:
        raise ValueError(f"model_conf.distill_conf: unknown key(s) {unknown}; known: {list(DISTILL_DEFAULTS)}")
    conf = {**DISTILL_DEFAULTS, **conf}
    if bool(conf["teacher_config"]) != bool(conf["teacher_model"]):
        raise ValueError(
            "model_conf.distill_conf: teacher_config and teacher_model go together (the dense model's config.yaml "
            f"and weights), got {conf['teacher_config']!r} and {conf['teacher_model']!r}"
        )
    weight, temperature = conf["weight"], conf["temperature"]
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
        raise ValueError(f"model_conf.distill_conf.weight must be a number >= 0, got {weight!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"model_conf.distill_conf.temperature must be a number > 0, got {temperature!r}")
    return conf


class Teacher:
    """The frozen dense model of ``distill_conf`` (not an ``nn.Module`` attribute of the student: its
    weights stay out of the student's state dict, optimizer and averaging)."""

    def __init__(self, config_file, model_file, device: torch.device, dtype: torch.dtype):
        from espnet2.tasks.s2t import S2TTask  # a gated teacher's classes: registered by the training's task

        if not config_file:
            raise ValueError(
                "model_conf.distill_conf names no teacher: the recipe sets teacher_config and teacher_model in stage "
                "11 (--distill_teacher); training without the recipe needs them in the config"
            )
        for path in (config_file, model_file):
            if not Path(path).is_file():
                raise FileNotFoundError(f"model_conf.distill_conf: teacher file {path} not found")
        model, _ = S2TTask.build_model_from_file(config_file, model_file, str(device))
        self.model = model.to(dtype=dtype).eval().requires_grad_(False)

    @torch.no_grad()
    def logits(self, speech, speech_lengths, ys_in_pad, ys_in_lens) -> torch.Tensor:
        """The teacher decoder's logits for the student's teacher-forced input."""
        model = self.model
        if hasattr(model, "gate_layout"):  # a gated teacher: every module open, the dense function
            layout = model.gate_layout
            enc_mask = torch.ones(layout.n_layers["enc"], 4)
            dec_mask = torch.ones(layout.n_layers["dec"], 3)
            enc, enc_lens, _ = model.encode_gated(speech, speech_lengths, None, enc_mask, dec_mask)
        else:
            enc, enc_lens = model.encode(speech, speech_lengths)
        enc = enc[0] if isinstance(enc, tuple) else enc
        return model.decoder(enc, enc_lens, ys_in_pad, ys_in_lens)[0]


def token_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    ys_in_pad: torch.Tensor,
    ys_in_lens: torch.Tensor,
    sos: int,
    temperature: float,
    normalize_length: bool,
) -> torch.Tensor:
    """``temperature**2 * KL(softmax(teacher / T) || softmax(student / T))`` summed over the positions the
    attention loss counts (from ``<sos>`` to the end of each target: a previous-text prompt before it is not
    counted), divided by the batch size, or by those positions' count with ``normalize_length``."""
    positions = torch.arange(ys_in_pad.size(1), device=ys_in_pad.device)
    start = (ys_in_pad == sos).int().argmax(dim=1, keepdim=True)
    counted = (positions >= start) & (positions < ys_in_lens.unsqueeze(1))
    log_p_student = torch.log_softmax(student.float() / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher.float() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    total = (kl * counted).sum() * temperature**2
    return total / (counted.sum() if normalize_length else ys_in_pad.size(0))
