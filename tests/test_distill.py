"""Distillation from the dense model during the gated fine-tuning (espnet_gated.method.distill)."""

import math

import pytest
import torch
from conftest import build, speech_batch
from test_model import _att_inputs

from espnet_gated.method.distill import check_distill_conf, token_kl
from espnet_gated.sharing.model_dir import save_model_dir


def test_token_kl_against_a_hand_computed_case():
    sos, pad = 1, 2
    # row 0: <sos> a b (3 counted positions); row 1: <sop> p <sos> a, the prompt's 2 positions not counted
    ys_in = torch.tensor([[sos, 5, 6, pad], [0, 7, sos, 5]])
    lens = torch.tensor([3, 4])
    teacher = torch.zeros(2, 4, 3)
    student = torch.zeros(2, 4, 3)
    student[0, 1] = torch.tensor([math.log(2.0), 0.0, 0.0])  # one position differs: p = (1/2, 1/4, 1/4)
    student[1, 0] = torch.tensor([5.0, 0.0, 0.0])  # a prompt position: not counted
    student[0, 3] = torch.tensor([5.0, 0.0, 0.0])  # padding: not counted
    # KL(uniform || (1/2, 1/4, 1/4)) = 1/3 * (log(1/3 / 1/2) + 2 log(1/3 / 1/4))
    kl = (math.log(2 / 3) + 2 * math.log(4 / 3)) / 3
    assert float(token_kl(student, teacher, ys_in, lens, sos, 1.0, False)) == pytest.approx(kl / 2)
    assert float(token_kl(student, teacher, ys_in, lens, sos, 1.0, True)) == pytest.approx(kl / 5)
    assert float(token_kl(teacher, teacher, ys_in, lens, sos, 2.0, False)) == 0.0
    # temperature: T^2 KL of the softened distributions
    soft = torch.softmax(student[0, 1] / 2.0, -1)
    expected = 4.0 * float((torch.full((3,), 1 / 3) * (torch.full((3,), 1 / 3).log() - soft.log())).sum())
    assert float(token_kl(student, teacher, ys_in, lens, sos, 2.0, False)) == pytest.approx(expected / 2)


def test_bad_distill_conf_is_named():
    with pytest.raises(ValueError, match="unknown key"):
        check_distill_conf({"teacher_config": "a", "teacher_model": "b", "alpha": 1})
    with pytest.raises(ValueError, match="teacher_config and teacher_model go together"):
        check_distill_conf({"teacher_config": "a"})
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        check_distill_conf({"teacher_config": "a", "teacher_model": "b", "temperature": 0})
    assert check_distill_conf(None) is None
    assert check_distill_conf({"weight": 0.5})["teacher_model"] is None  # builds; the recipe sets the teacher


def test_training_without_a_teacher_says_who_sets_it(vocab):
    student = build(vocab["token_list"], model_conf=dict(ctc_weight=0.3, distill_conf={"weight": 1.0}))
    speech, lengths = speech_batch([16000, 12000], seed=1)
    student.eval()
    student(speech, lengths, **_att_inputs(student, 2, seed=2))  # decoding-time forward: no teacher needed
    student.train()
    with pytest.raises(ValueError, match=r"names no teacher: the recipe sets .* \(--distill_teacher\)"):
        student(speech, lengths, **_att_inputs(student, 2, seed=2))


def test_the_dense_start_teaches_the_gated_model(vocab, tmp_path):
    """The teacher is the dense model the fine-tuning starts from: every gate open, the student computes
    the teacher's function (distillation loss 0); gates closed, it moves the student toward it."""
    dense = build(vocab["token_list"], dense=True)
    config, model_file = save_model_dir(tmp_path / "teacher", _dense_config(vocab), dense.state_dict())
    distill = dict(teacher_config=str(config), teacher_model=str(model_file), weight=1.0)
    sparsity = dict(decoder_target=0.5)
    student = build(
        vocab["token_list"],
        seed=1,
        model_conf=dict(ctc_weight=0.3, lsm_weight=0.1, distill_conf=distill, sparsity_conf=sparsity),
    )
    student.load_state_dict(dense.state_dict(), strict=False)
    speech, lengths = speech_batch([16000, 12000], seed=1)
    inputs = _att_inputs(student, 2, seed=2)

    student.eval()
    _, stats, _ = student(speech, lengths, **inputs)
    assert "loss_distill" not in stats and student._teacher is None  # decoding never loads the teacher

    student.train()
    with torch.no_grad():  # every gate open (far from the Gumbel noise)
        student.gate_predictor.mlp[-1].bias.view(-1, 2)[:, 1] = 50.0
    loss, stats, _ = student(speech, lengths, **inputs)
    assert float(stats["loss_distill"]) == pytest.approx(0.0, abs=1e-5)
    assert not any(k.startswith("_teacher") for k in student.state_dict())

    with torch.no_grad():  # the decoder's feed-forward modules closed
        student.gate_predictor.mlp[-1].bias.view(-1, 2)[:, 1] = 50.0
        for i, slot in enumerate(student.gate_layout.slots):
            if slot.side == "dec" and slot.module == "feed_forward":
                student.gate_predictor.mlp[-1].bias.view(-1, 2)[i, 1] = -50.0
    loss, stats, _ = student(speech, lengths, **inputs)
    assert float(stats["loss_distill"]) > 1e-3
    without = float(stats["loss"]) - 0.7 * float(stats["loss_distill"])  # (1 - ctc_weight) * weight * distill
    assert without == pytest.approx(0.3 * float(stats["loss_ctc"]) + 0.7 * float(stats["loss_att"])
                                    + float(stats["loss_sparsity"]), rel=1e-5)  # fmt: skip
    loss.backward()
    assert student.decoder.decoders[0].self_attn.linear_q.weight.grad.abs().sum() > 0


def _dense_config(vocab):
    from conftest import model_args

    return vars(model_args(vocab["token_list"], dense=True))
