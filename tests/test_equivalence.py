"""Every gate open, the gated model computes what ESPnet's dense model of the installed release computes
from the same weights: encoder in training and at inference on padded batches of unequal lengths, the
losses, the decoder's forward and ``batch_score`` with ``xs_mask``, ESPnet's own beam search (202611's
utterance-batched one too) and the n-best lists on real (espeak-ng) audio. These run on both releases.

Where the releases differ, so does what "equal" means at inference on a padded batch: 202611's layers zero
the padding before their time convolutions and build each utterance's own frame mask, so the stock model's
padded batch is the reference; 202511's let the padding leak into shorter utterances, which the gated
encoder does not do at inference (each utterance gets the output it gets alone), so there the reference is
the stock model on each utterance alone.
"""

import shutil

import numpy as np
import pytest
import torch
from conftest import build, context_ids, speech_batch
from test_model import _att_inputs, espnet_search
from test_pretrained import DECODE, converted, dense_speech2text, owsm  # noqa: F401 (fixtures)

from espnet_gated.adapter import GatedDecoderScorer, use_prompt_ctc
from espnet_gated.compat import STOCK_ZEROES_PADDING, subsequent_mask
from espnet_gated.corpus.synth import Speaker, synthesize
from espnet_gated.decoding.features import UtteranceWiseFrontend
from espnet_gated.decoding.inference import GatedSpeech2Text

LENGTHS = [16000, 11000, 9000]  # a padded batch of unequal lengths
#: what batching may change at inference (matrix products of other shapes), the documented bound
ATOL = 1e-5
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture
def pair(vocab):
    """(dense, gated) with the same weights; the gated model keeps every gate open: in training its
    warm-up does, at inference its fresh predictor does (every keep bias 3, output weights 0)."""
    dense = build(vocab["token_list"], dense=True)
    gated = build(
        vocab["token_list"], seed=1, model_conf=dict(ctc_weight=0.3, lsm_weight=0.1, gate_conf=dict(warmup_steps=1000))
    )
    gated.load_state_dict(dense.state_dict(), strict=False)
    return dense, gated


def _all_open(gated):
    layout = gated.gate_layout
    return torch.ones(layout.n_layers["enc"], 4), torch.ones(layout.n_layers["dec"], 3)


@pytest.mark.parametrize("training", [True, False])
def test_encoder_on_a_padded_batch(pair, training):
    dense, gated = pair
    dense.train(training)
    gated.train(training)
    speech, lengths = speech_batch(LENGTHS)
    ctx = context_ids(gated, [("deu", "asr"), ("fra", "st_eng"), ("ita", "asr")])
    with torch.no_grad():
        enc_g, lens_g, gates = gated.encode_gated(speech, lengths, ctx)
        assert gates.enc.min() == 1 and gates.dec.min() == 1
        if training or STOCK_ZEROES_PADDING:
            enc_d, lens_d = dense.encode(speech, lengths)
            assert torch.equal(lens_g, lens_d)
            for i, n in enumerate(lens_d.tolist()):
                assert torch.equal(enc_g[i, :n], enc_d[i, :n]), i  # exactly
        if training:
            return
        # decoding computes each utterance's features alone (ESPnet's batched STFT reads the padding into
        # the last frame of a shorter utterance): then each gets what the stock model gives it alone
        enc_g, lens_g, _ = gated.encode_gated(speech, lengths, ctx, frontend=UtteranceWiseFrontend(gated.frontend))
        for i, n in enumerate(LENGTHS):
            alone, alone_lens = dense.encode(speech[i : i + 1, :n], lengths[i : i + 1])
            assert int(lens_g[i]) == int(alone_lens[0])
            assert torch.allclose(enc_g[i, : lens_g[i]], alone[0], atol=ATOL), i


def test_losses_of_a_padded_batch_in_training(pair):
    dense, gated = pair
    dense.train()
    gated.train()
    speech, lengths = speech_batch(LENGTHS, seed=2)
    inputs = _att_inputs(gated, 3, seed=3)
    torch.manual_seed(0)
    loss_d, stats_d, _ = dense(speech, lengths, **inputs)
    torch.manual_seed(0)
    loss_g, stats_g, _ = gated(speech, lengths, **inputs)
    assert float(stats_g["sparsity_dec"]) == 0.0  # the warm-up: every gate open, no sparsity loss
    for key in ("loss_att", "loss_ctc", "acc"):
        assert torch.equal(stats_g[key], stats_d[key]), key
    assert torch.equal(loss_g, loss_d)


def test_decoder_forward_and_batch_score_with_xs_mask(pair):
    dense, gated = pair
    dense.eval()
    gated.eval()
    speech, lengths = speech_batch(LENGTHS, seed=4)
    inputs = _att_inputs(gated, 3, seed=5)
    ys_in = torch.cat([torch.full((3, 1), gated.sos), inputs["text"]], 1)
    ys_lens = inputs["text_lengths"] + 1
    n_dec = len(gated.decoder.decoders)
    ones = torch.ones(3, n_dec, 3)
    with torch.no_grad():
        enc, enc_lens, _ = gated.encode_gated(speech, lengths, None, *_all_open(gated))
        logits_d, _ = dense.decoder(enc, enc_lens, ys_in, ys_lens)
        logits_g, _ = gated.decoder(enc, enc_lens, ys_in, ys_lens, gates=ones)
        assert torch.allclose(logits_g, logits_d, atol=ATOL)

        # two hypotheses per utterance, utterance-major as ESPnet's batched search lays them out
        per = 2
        xs = enc.repeat_interleave(per, 0)
        xs_mask = (torch.arange(enc.size(1))[None, :] < enc_lens[:, None]).unsqueeze(1).repeat_interleave(per, 0)
        scorer = GatedDecoderScorer(gated.decoder, enc, enc_lens, masks=ones)
        states_g = states_s = [None] * (3 * per)
        for t in range(3, 6):
            ys = ys_in[:, :t].repeat_interleave(per, 0)
            logp_g, states_g = gated.decoder.batch_score(ys, states_g, xs, xs_mask=xs_mask, gates=ones[:1])
            logp_s, states_s = scorer.batch_score(ys, states_s, xs, xs_mask=xs_mask)
            assert torch.allclose(logp_s, logp_g, atol=ATOL), t  # cached cross-attention keys/values
            for i, n in enumerate(enc_lens.tolist()):
                rows = slice(i * per, (i + 1) * per)
                alone, _ = dense.decoder.batch_score(ys[rows], [None] * per, enc[i : i + 1, :n].expand(per, -1, -1))
                assert torch.allclose(logp_g[rows], alone, atol=ATOL), (t, i)
            if STOCK_ZEROES_PADDING:  # 202611's own batch_score takes the mask
                stock, _ = dense.decoder.batch_score(ys, [None] * (3 * per), xs, xs_mask=xs_mask)
                assert torch.allclose(logp_g, stock, atol=ATOL), t


def _same_hyps(got, want):
    assert [h.yseq.tolist() for h in got] == [h.yseq.tolist() for h in want]
    assert torch.allclose(torch.tensor([float(h.score) for h in got]), torch.tensor([float(h.score) for h in want]))


def test_espnets_beam_search_with_the_gated_decoder(pair):
    dense, gated = pair
    dense.eval()
    gated.eval()
    speech, lengths = speech_batch([15000], seed=6)
    with torch.no_grad():
        enc, _ = dense.encode(speech, lengths)
        want = espnet_search(dense)(enc[0], maxlenratio=-6)
        got = espnet_search(gated, GatedDecoderScorer(gated.decoder, enc[0], masks=torch.ones(1, 3, 3)))(
            enc[0], maxlenratio=-6
        )
    _same_hyps(got, want)


@pytest.mark.skipif(not STOCK_ZEROES_PADDING, reason="ESPnet 202611's utterance-batched search (PR #6599)")
def test_espnets_utterance_batched_search_runs_each_utterances_mask(pair):
    _, gated = pair
    gated.eval()
    speech, lengths = speech_batch(LENGTHS, seed=7)
    masks = torch.ones(3, 3, 3)
    masks[1, 0, 1] = masks[1, 2, 2] = masks[2, 1, 0] = 0  # utterances 1 and 2 close some modules
    with torch.no_grad():
        enc, enc_lens, _ = gated.encode_gated(speech, lengths, None, *_all_open(gated))
        batched = espnet_search(gated, GatedDecoderScorer(gated.decoder, enc, enc_lens, masks=masks))(
            enc, maxlenratio=-5, x_lengths=enc_lens
        )
        for i, n in enumerate(enc_lens.tolist()):
            alone = GatedDecoderScorer(gated.decoder, enc[i, :n], masks=masks[i : i + 1])
            _same_hyps(batched[i], espnet_search(gated, alone)(enc[i, :n], maxlenratio=-5))


def _espeak(text: str, voice: str) -> np.ndarray:
    return synthesize(text, Speaker(voice, "m2", 160, 50)).astype(np.float32)


@needs_espeak
def test_nbest_on_real_audio_equals_espnets(owsm, converted):  # noqa: F811 (fixtures)
    """The recipe's kind of audio (espeak-ng speech), joint CTC/attention search with a 3-best list:
    ESPnet's dense model and the gated model converted from it, every gate open, give the same lists."""
    decode = {**DECODE, "nbest": 3}
    dense = dense_speech2text(owsm, **decode)
    use_prompt_ctc(dense.beam_search)  # CTC scoring as ours (202611's search does it itself)
    gated = GatedSpeech2Text(
        s2t_train_config=converted / "config.yaml",
        s2t_model_file=converted / "init.pth",
        gate_mode="all_open",
        **decode,
    )
    for text, voice in (("guten tag die katze", "de"), ("bonjour le monde", "fr")):
        x = _espeak(text, voice)
        want, got = dense(x), gated(x)
        assert len(want) == 3
        assert [h[:4] for h in got] == [h[:4] for h in want]  # text, tokens, ids, text without specials
        assert torch.allclose(
            torch.tensor([float(h[4].score) for h in got]), torch.tensor([float(h[4].score) for h in want])
        )


def test_cached_self_attention_state_follows_espnets_contract(pair):
    """A hypothesis' decoder state is ESPnet's: one (L-1, D) output per layer."""
    _, gated = pair
    gated.eval()
    speech, lengths = speech_batch([12000], seed=8)
    with torch.no_grad():
        enc, _, _ = gated.encode_gated(speech, lengths, None, *_all_open(gated))
        ys = torch.tensor([[gated.sos, 5, 6]])
        mask = subsequent_mask(3).unsqueeze(0)
        _, cache = gated.decoder.forward_one_step(ys, mask, enc, gates=torch.ones(1, 3, 3))
    assert [tuple(c.shape) for c in cache] == [(1, 3, enc.size(-1))] * len(gated.decoder.decoders)
