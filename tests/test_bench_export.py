"""Static export, batched decoding and the benchmark, on tiny models (seconds each)."""

import json

import pytest
import torch
from conftest import model_args, speech_batch
from espnet2.asr.ctc import CTC

from espnet_gated.adapter import GatedDecoderScorer, PromptCTCScorer, bound_search
from espnet_gated.bench.accounting import latency_targets, summarize_latency, summarize_throughput
from espnet_gated.bench.models import random_config
from espnet_gated.bench.variants import Variant
from espnet_gated.bin import bench
from espnet_gated.compat import CTCPrefixScorer
from espnet_gated.decoding.inference import GatedSpeech2Text
from espnet_gated.method.flops import encoder_macs, input_layer_macs, search_macs
from espnet_gated.method.layout import format_mask, parse_mask
from espnet_gated.plugin.tasks import preprocessor_defaults
from espnet_gated.sharing.export import export
from espnet_gated.sharing.model_dir import build_from_config, save_model_dir

#: enc layer 0: attn closed (merge keeps the cgmlp half), layer 1: cgmlp closed, layer 2: macaron FFN and both
#: branches closed (merge removed); dec: self_attn, src_attn, FFN closed in layers 0, 1, 2
MASK = "enc=1011.1101.0001 dec=011.101.110"
DECODE = dict(beam_size=3, maxlenratio=-8.0, lang_sym="<deu>", task_sym="<asr>")


def _config(vocab, **gate_conf):
    args = model_args(vocab["token_list"])
    args.preprocessor = "s2t"
    args.preprocessor_conf = {**preprocessor_defaults(), "speech_length": None}
    args.token_type, args.bpemodel = "bpe", str(vocab["bpemodel"])
    args.model_conf = {**args.model_conf, "gate_conf": {"hidden_size": 16, "context_dim": 8, **gate_conf}}
    return vars(args)


def _model_dir(root, vocab, seed=0, predictor_std=0.0, **gate_conf):
    """A tiny random gated model on disk; predictor_std > 0 gives the gate predictor random
    output weights, so masks differ between contexts (and utterances, with audio)."""
    config = _config(vocab, **gate_conf)
    torch.manual_seed(seed)
    model = build_from_config(config)
    if predictor_std:
        with torch.no_grad():
            model.gate_predictor.mlp[-1].weight.normal_(0.0, predictor_std)
            model.gate_predictor.mlp[-1].bias.zero_()
    return save_model_dir(root, config, model.state_dict())


def _speeches(lengths, seed=0):
    speech, lens = speech_batch(lengths, seed=seed)
    return [speech[i, :n] for i, n in enumerate(lens.tolist())]


def _hyps(results):
    return [(r[0][4].yseq.tolist(), float(r[0][4].score)) for r in results]


def _same(a, b):
    assert [y for y, _ in a] == [y for y, _ in b]
    assert torch.allclose(torch.tensor([s for _, s in a]), torch.tensor([s for _, s in b]), atol=1e-4)


@pytest.fixture(scope="module")
def gated_dir(tmp_path_factory, vocab):
    return _model_dir(tmp_path_factory.mktemp("gated"), vocab, predictor_std=2.0)


def test_exported_model_decodes_like_the_gated_model_with_that_mask(gated_dir, tmp_path):
    config, model_file = gated_dir
    summary = export(config, model_file, tmp_path / "exp", mask=MASK)
    assert summary["mask"] == MASK
    assert summary["params"]["exported"] < summary["params"]["gated"]
    state = torch.load(tmp_path / "exp" / "model.pth", weights_only=True)
    assert not any(k.startswith("gate_predictor.") for k in state)
    for gone in (
        "encoder.encoders.0.attn.linear_q.weight",
        "encoder.encoders.1.cgmlp.channel_proj1.0.weight",
        "encoder.encoders.2.feed_forward_macaron.w_1.weight",
        "encoder.encoders.2.merge_proj.weight",
        "decoder.decoders.0.self_attn.linear_q.weight",
        "decoder.decoders.1.src_attn.linear_k.weight",
        "decoder.decoders.2.feed_forward.w_1.weight",
    ):
        assert gone not in state, gone
    d = 32
    assert state["encoder.encoders.0.merge_proj.weight"].shape == (d, d)  # open half only
    assert state["encoder.encoders.1.depthwise_conv_fusion.weight"].shape[0] == d
    assert "encoder.encoders.2.feed_forward.w_1.weight" in state

    speeches = _speeches([16000, 13000], seed=1)
    gated = GatedSpeech2Text(str(config), str(model_file), ctc_weight=0.3, **DECODE)
    exported = GatedSpeech2Text(
        str(tmp_path / "exp/config.yaml"), str(tmp_path / "exp/model.pth"), ctc_weight=0.3, **DECODE
    )
    parsed = parse_mask(MASK)
    masks = (torch.tensor(parsed["enc"]), torch.tensor(parsed["dec"]))
    expected = _hyps([gated.decode(s, masks=masks).nbests[0] for s in speeches])
    got = [exported.decode(s) for s in speeches]
    _same(_hyps([d.nbests[0] for d in got]), expected)
    assert format_mask(*got[0].masks[0]) == MASK
    _same(_hyps(exported.decode_batch(speeches).nbests), expected)


def test_context_only_export_uses_the_predicted_mask(tmp_path, vocab):
    config, model_file = _model_dir(tmp_path / "ctx", vocab, seed=3, predictor_std=2.0, use_audio=False)
    summary = export(config, model_file, tmp_path / "exp", lang_sym="fra", task_sym="st_eng")
    decode = {**DECODE, "lang_sym": "<fra>", "task_sym": "<st_eng>"}
    gated = GatedSpeech2Text(str(config), str(model_file), ctc_weight=0.0, **decode)
    exported = GatedSpeech2Text(str(tmp_path / "exp/config.yaml"), str(tmp_path / "exp/model.pth"), **decode)
    speech = _speeches([14000], seed=2)[0]
    decoding = gated.decode(speech)
    expected = _hyps(decoding.nbests)
    assert format_mask(*decoding.masks[0]) == summary["mask"]
    assert "0" in summary["mask"]  # the random predictor closes something
    _same(_hyps([exported(speech)]), expected)


def test_export_errors_are_clear(gated_dir, tmp_path, vocab):
    config, model_file = gated_dir
    with pytest.raises(ValueError, match="use_audio"):
        export(config, model_file, tmp_path / "a", lang_sym="deu", task_sym="asr")
    with pytest.raises(ValueError, match="enc"):
        export(config, model_file, tmp_path / "b", mask="enc=1111 dec=111.111.111")
    with pytest.raises(ValueError, match="--sparsity chooses a predicted mask"):
        export(config, model_file, tmp_path / "b", mask=MASK, sparsity=0.5)
    summary = export(config, model_file, tmp_path / "c", mask=MASK)
    # the exported weights with the gated config: the loader names the file instead of using random weights
    with pytest.raises(ValueError, match="model.pth"):
        GatedSpeech2Text(str(config), summary["model_file"], **DECODE)


@pytest.mark.parametrize(
    "ctc_weight, maxlenratio", [(0.0, 0.0), (0.3, -8.0), (0.5, 0.5), (0.3, 0.0), (0.3, 1.0), (0.3, 1.5)]
)
def test_batched_decoding_equals_per_utterance_decoding(gated_dir, ctc_weight, maxlenratio):
    """Mixed masks (the random predictor reads audio and context), unequal lengths, CTC,
    per-utterance length limits and end detection."""
    config, model_file = gated_dir
    s2t = GatedSpeech2Text(
        str(config), str(model_file), ctc_weight=ctc_weight, **{**DECODE, "maxlenratio": maxlenratio}
    )
    speeches = _speeches([16000, 12000, 16000, 13000], seed=5)
    langs, tasks = ["<deu>", "<fra>", "<ita>", "<eng>"], ["<asr>", "<st_eng>", "<asr>", "<asr>"]
    single, masks = [], []
    for speech, lang, task in zip(speeches, langs, tasks, strict=True):
        decoding = s2t.decode(speech, lang_sym=lang, task_sym=task)
        single.append(decoding.nbests[0])
        masks.append(format_mask(*decoding.masks[0]))
    assert len(set(masks)) > 1
    batched = s2t.decode_batch(speeches, langs, tasks)
    _same(_hyps(batched.nbests), _hyps(single))
    assert [format_mask(*m) for m in batched.masks] == masks


def test_ctc_prefix_scores_leave_out_the_prompt():
    """Scoring <sos><lang><task><notimestamps> a b gives what ESPnet's scorer gives <sos> a b."""
    torch.manual_seed(0)
    vocab_size, eos = 12, 11
    ctc = CTC(odim=vocab_size, encoder_output_size=8)
    x = torch.randn(6, 8)
    prompt, tokens = [eos, 3, 4, 5], [7, 2]
    plain, prompted = CTCPrefixScorer(ctc, eos), PromptCTCScorer(CTCPrefixScorer(ctc, eos), len(prompt))

    def prefix_scores(scorer, primer):
        """The scorer's scores of every token after primer, primer + tokens[:1], ... (batch search calls)."""
        state = [scorer.batch_init_state(x)]
        y, out = list(primer), []
        for token in [*tokens, None]:
            scores, states = scorer.batch_score_partial(torch.tensor([y]), None, state, x)
            out.append(scores[0])
            if token is not None:
                state = [scorer.select_state(states, 0, token)]
                y.append(token)
        return torch.stack(out)

    reference = prefix_scores(plain, [eos])
    assert torch.allclose(prefix_scores(prompted, prompt), reference, atol=1e-5)
    # ESPnet's own scorer counts the prompt as CTC output: other scores
    assert not torch.allclose(prefix_scores(plain, prompt), reference, atol=1e-2)
    # the primer's length is the search's: a shorter one
    shorter = PromptCTCScorer(CTCPrefixScorer(ctc, eos), 2)
    assert torch.allclose(prefix_scores(shorter, [eos, 3]), prefix_scores(plain, [eos]), atol=1e-5)


def test_one_search_gets_the_prompt_ctc_scorer_and_espnets_search_stays_as_it_was(gated_dir):
    config, model_file = gated_dir
    s2t = GatedSpeech2Text(str(config), str(model_file), ctc_weight=0.3, **DECODE)
    stock = s2t.beam_search
    ctc, decoder = stock.part_scorers["ctc"], stock.full_scorers["decoder"]
    enc = torch.zeros(20, 32)
    scorer = GatedDecoderScorer(s2t.s2t_model.decoder, enc, masks=torch.ones(1, 3, 3))
    search = bound_search(stock, scorer, [1, 2, 3, 4, 5])
    wrapped = search.part_scorers["ctc"]
    assert isinstance(wrapped, PromptCTCScorer) and wrapped.scorer is ctc and wrapped.primer_length == 5
    assert search.scorers["ctc"] is wrapped and search.full_scorers["decoder"] is scorer
    assert search.weights["ctc"] == 0.3 and search.hyp_primer == [1, 2, 3, 4, 5]
    # values, not state: ESPnet's search object is untouched
    assert stock.part_scorers["ctc"] is ctc and stock.full_scorers["decoder"] is decoder
    assert stock.scorers["ctc"] is ctc and stock.hyp_primer != [1, 2, 3, 4, 5]


def test_bench_runs_end_to_end_and_reports_consistent_numbers(tmp_path):
    out = tmp_path / "bench"
    args = (
        f"--size tiny --vocab_size 80 --n_utts 2 --utt_sec 1.2 --beam 2 --ctc_weight 0 --decode_len 4 "
        f"--sparsities 0.25,0.75 --sides enc,dec,both --export_mask both@0.75 --threads 1 --out {out}"
    ).split()
    args = [a.replace(",", " ") for a in args]
    bench.main(args)
    assert (out / "bench.md").read_text().startswith("# espnet_gated benchmark")
    assert (out / "bench.png").stat().st_size > 0
    report = json.loads((out / "bench.json").read_text())
    assert set(report) == {"meta", "runs", "export"}
    (run,) = report["runs"]
    rows = {r["variant"]: r for r in run["variants"]}
    expected = {"dense", "all_open", "all_open_nocache", "predicted", "exported"}
    expected |= {f"{side}@{s}" for side in ("enc", "dec", "both") for s in ("0.25", "0.75")}
    assert set(rows) == expected
    dense = rows["dense"]
    for name, r in rows.items():
        assert r["n_utts"] == 2
        assert all(r["speedup"][p] > 0 for p in ("enc", "dec", "total")), name
        assert all(len(u["steps"]) == 4 for u in r["utterances"]), name  # fixed decode length
        # what ran, as the config implies: 1.2 s at 16 kHz in 10 ms hops (centred) are 121 feature frames, 29
        # after conv2d subsampling (x4); 4 decoder calls after the 4-token prompt, 1 hypothesis then a beam of 2
        assert all(u["feat_frames"] == 121 and u["frames"] == 29 for u in r["utterances"]), name
        assert all(u["steps"] == [[1, 4], [2, 5], [2, 6], [2, 7]] for u in r["utterances"]), name
    # the same arithmetic as ESPnet's dense model, and the same hypotheses
    assert rows["all_open_nocache"]["macs"] == pytest.approx(dense["macs"])
    assert rows["all_open"]["same_hyps_as_dense"] and rows["all_open_nocache"]["same_hyps_as_dense"]
    assert rows["exported"]["same_hyps_as_gated"] is True
    assert report["export"]["params"]["exported"] < report["export"]["params"]["dense"]
    # executed MACs fall as sparsity grows
    for side in ("enc", "dec", "both"):
        macs = [rows[v]["macs"]["total"] for v in ("all_open", f"{side}@0.25", f"{side}@0.75")]
        assert macs[0] > macs[1] > macs[2], (side, macs)
    # MACs recomputed independently from what the JSON says ran
    model = build_from_config(random_config("tiny", 80, 1.2))
    for name in ("dense", "enc@0.75", "dec@0.75"):
        u = rows[name]["utterances"][0]
        enc_mask = dec_mask = None
        if u["mask"]:
            enc_mask, dec_mask = (torch.tensor(parse_mask(u["mask"])[s]) for s in ("enc", "dec"))
        cache = name != "dense"
        enc = input_layer_macs(model.encoder, u["feat_frames"], 80) + encoder_macs(model.encoder, u["frames"], enc_mask)
        dec = search_macs(model.decoder, u["frames"], u["steps"], dec_mask, cache_src_kv=cache, cache_self_kv=cache)
        assert rows[name]["macs"]["enc"] == pytest.approx(enc)
        assert rows[name]["macs"]["dec"] == pytest.approx(dec)
    assert rows["enc@0.75"]["sparsity"]["enc"] == pytest.approx(0.75)
    assert rows["dec@0.25"]["closed_modules"] == {"enc": 0, "dec": 2}  # round(0.25 * 6) modules


def test_bench_batched_variants(tmp_path):
    out = tmp_path / "bench"
    bench.main(
        [
            *"--size tiny --vocab_size 80 --n_utts 2 --batch 2 --utt_sec 1.2 --beam 2 --decode_len 3".split(),
            *["--ctc_weight", "0.3", "--sparsities", "0.5", "--sides", "dec", "--out", str(out)],
        ]
    )
    report = json.loads((out / "bench.json").read_text())
    rows = {r["variant"]: r for r in report["runs"][0]["variants"]}
    assert report["meta"]["batch"] == 2
    assert rows["all_open"]["same_hyps_as_dense"]
    assert all(len(u["steps"]) == 3 for u in rows["dec@0.5"]["utterances"])
    assert rows["exported"]["same_hyps_as_gated"] is True


def test_bench_rejects_bad_options(tmp_path):
    with pytest.raises(SystemExit, match="--sides"):
        bench.main(["--size", "tiny", "--sides", "encoder", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="decode_len"):
        bench.main(
            [
                *"--size tiny --vocab_size 80 --n_utts 1 --utt_sec 0.5 --ctc_weight 0.3 --decode_len 30".split(),
                "--out",
                str(tmp_path),
            ]
        )


def test_bench_throughput_mode_decodes_the_whole_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no --out: a default folder under exp/bench
    report = bench.main(
        "--throughput --size tiny --vocab_size 80 --n_utts 5 --utt_sec 1.2 --beam 2 --decode_len 3 --threads 1".split()
        + ["--batch", "1 3", "--ctc_weight", "0 0.5"]
    )
    (out,) = (tmp_path / "exp" / "bench").glob("throughput_tiny_*")
    assert json.loads((out / "bench.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "bench.md").read_text().startswith("# espnet_gated throughput benchmark")
    assert (out / "bench.png").stat().st_size > 0
    meta = report["meta"]
    assert meta["n_utts"] == 5 and meta["utt_s"]["min"] < meta["utt_s"]["max"]  # unequal lengths
    assert [r["ctc_weight"] for r in report["runs"]] == [0.0, 0.5]
    for run in report["runs"]:
        rows = {(r["variant"], r["batch"]): r for r in run["variants"]}
        espnet_search = {("all_open+espnet_search", 3), ("predicted+espnet_search", 3)}
        ours = {(v, b) for v in ("all_open", "predicted", "dec@0.5") for b in (1, 3)}
        assert set(rows) == {("dense", 1)} | ours | espnet_search
        assert rows["dense", 1]["speedup"] == rows["dense", 1]["speedup_cpu"] == 1.0
        for r in run["variants"]:
            assert r["walls"] == [r["wall_s"]]  # one repeat
            assert 0 < r["cpu_s"] and 0 < r["enc_s"] and 0 < r["dec_s"]
            assert r["enc_s"] + r["dec_s"] <= r["wall_s"] + 1e-9  # parts of the decode's time
            if (r["variant"], r["batch"]) in espnet_search:  # its scorers are not timed: no CTC share, not 0
                assert r["ctc_s"] is None and r["ctc_share"] is None
            else:
                assert (r["ctc_s"] > 0) == (run["ctc_weight"] > 0) and r["ctc_s"] < r["wall_s"]
        # ESPnet's search and ours find the same hypotheses
        for v in ("all_open", "predicted"):
            assert rows[f"{v}+espnet_search", 3]["same_hyps_as_dense"] == rows[v, 3]["same_hyps_as_dense"]
        # every gate open, batched or not: the dense model's hypotheses
        assert rows["all_open", 1]["same_hyps_as_dense"] == rows["all_open", 3]["same_hyps_as_dense"] == 1.0
    with pytest.raises(SystemExit, match="--throughput"):
        bench.main(["--size", "tiny", "--batch", "1 4", "--out", str(tmp_path / "x")])


#: what ran for one 1.2 s utterance decoded for 4 tokens with a beam of 2 (see the end-to-end test)
RAN = dict(gates_s=0.0, feat_frames=121, frames=29, steps=[(1, 4), (2, 5), (2, 6), (2, 7)])


def _record(utt, enc_s, dec_s, mask=None, yseq=(1, 2)):
    """What the latency runner records of one utterance."""
    return dict(RAN, utt=utt, total_s=enc_s + dec_s, enc_s=enc_s, dec_s=dec_s, mask=mask, yseq=list(yseq))


def test_bench_ratios_from_known_times():
    """Records with known times give known figures: each utterance's fastest repeat, the median over utterances,
    speed-up = dense time / variant time per part; a variant doing the dense model's arithmetic has ideal 1, so
    its realized/ideal is its speed-up; the decoder caches save decoder MACs only."""
    model = build_from_config(random_config("tiny", 80, 1.2))
    ones = "enc=1111.1111 dec=111.111"
    dense = Variant("dense", "dense")
    nocache = Variant("all_open_nocache", "gated", cache=False)
    cached = Variant("all_open", "gated")
    for utt, (scale, slower) in enumerate(((1.0, 2), (0.5, 2), (3.0, 1))):  # the median: dense 0.1 s + 0.2 s
        dense.records.append(_record(utt, 0.1 * scale, 0.2 * scale))
        nocache.records.append(_record(utt, 0.1 * scale * slower, 0.2 * scale * slower, ones))  # median: x2
        cached.records.append(_record(utt, 0.5, 0.5, ones))  # a slower repeat: left out
        cached.records.append(_record(utt, 0.05 * scale, 0.1 * scale, ones, yseq=(1, 3) if utt == 2 else (1, 2)))
    summary = summarize_latency([dense, nocache, cached], model, 0.0, 80, {"enc": 8, "dec": 6})
    rows = {r["variant"]: r for r in summary}
    approx = pytest.approx
    assert rows["dense"]["ms"] == approx({"enc": 100, "dec": 200, "total": 300, "gates": 0})
    assert rows["dense"]["ms_min"]["total"] == approx(150) and rows["dense"]["ms_mean"]["total"] == approx(450)
    assert rows["all_open"]["n_utts"] == 3 and rows["all_open"]["ms"]["total"] == approx(150)
    assert rows["all_open_nocache"]["speedup"] == approx({"enc": 0.5, "dec": 0.5, "total": 0.5})
    assert rows["all_open_nocache"]["ideal"] == approx({"enc": 1.0, "dec": 1.0, "total": 1.0})
    assert rows["all_open_nocache"]["realized_over_ideal"] == approx({"enc": 0.5, "dec": 0.5, "total": 0.5})
    assert rows["all_open"]["speedup"] == approx({"enc": 2.0, "dec": 2.0, "total": 2.0})
    assert rows["all_open"]["ideal"]["enc"] == approx(1.0) and rows["all_open"]["ideal"]["dec"] > 1.0
    assert rows["all_open"]["realized_over_ideal"]["enc"] == approx(2.0)
    assert rows["all_open_nocache"]["speedup_vs_all_open"]["total"] == approx(0.25)
    assert rows["all_open"]["closed_modules"] == {"enc": 0, "dec": 0}
    assert [rows[v]["same_hyps_as_dense"] for v in ("dense", "all_open_nocache", "all_open")] == [True, True, False]
    assert latency_targets(summary)["overhead_pct"] == approx(100.0)


def test_throughput_figures_from_known_times():
    """4 utterances, 10 s of audio: dense 2 s, a variant's fastest repeat 0.5 s, one hypothesis off."""
    hyps = [[1, 2], [1, 3], [1, 4], [1, 5]]
    dense, fast = Variant("dense", "dense"), Variant("dec@0.5", "gated", batch=4)
    dense.records = [dict(wall_s=2.0, cpu_s=4.0, enc_s=0.5, dec_s=1.5, ctc_s=0.4, hyps=hyps)]
    fast.records = [
        dict(wall_s=0.8, cpu_s=1.0, enc_s=0.3, dec_s=0.5, ctc_s=0.2, hyps=hyps),
        dict(wall_s=0.5, cpu_s=1.6, enc_s=0.2, dec_s=0.3, ctc_s=0.1, hyps=[*hyps[:3], [9]]),
    ]
    rows = summarize_throughput([dense, fast], 4, 10.0)
    approx = pytest.approx
    want_dense = dict(utt_per_s=2.0, rtf=0.2, speedup=1.0, speedup_cpu=1.0, ctc_share=0.2, same_hyps_as_dense=1.0)
    assert {k: rows[0][k] for k in want_dense} == approx(want_dense)
    want = dict(utt_per_s=8.0, rtf=0.05, speedup=4.0, speedup_cpu=2.5, ctc_share=0.2, same_hyps_as_dense=0.75)
    assert {k: rows[1][k] for k in want} == approx(want)
    assert rows[1]["batch"] == 4 and rows[1]["walls"] == [0.8, 0.5] and rows[1]["enc_s"] == 0.2


@pytest.mark.parametrize("ctc_weight, maxlenratio", [(0.0, -8.0), (0.3, 0.0), (0.5, 0.5)])
def test_espnets_search_gives_the_hypotheses_of_ours(gated_dir, ctc_weight, maxlenratio):
    """decode_batch with ESPnet's own search (utterance-batched on 202611, one utterance at a time on 202511),
    the gated decoder running each utterance's mask: the hypotheses of our multi-utterance search."""
    config, model_file = gated_dir
    s2t = GatedSpeech2Text(
        str(config), str(model_file), ctc_weight=ctc_weight, **{**DECODE, "maxlenratio": maxlenratio}
    )
    speeches = _speeches([16000, 12000, 14500, 13000], seed=6)
    langs, tasks = ["<deu>", "<fra>", "<ita>", "<eng>"], ["<asr>", "<st_eng>", "<asr>", "<asr>"]
    ours = s2t.decode_batch(speeches, langs, tasks)
    espnet = s2t.decode_batch(speeches, langs, tasks, search="espnet")
    tail_of_one = s2t.decode_batch(speeches, langs, tasks, search="espnet", batch_size=3)  # 3 + 1 utterances
    assert len({format_mask(*m) for m in ours.masks}) > 1
    assert [format_mask(*m) for m in espnet.masks] == [format_mask(*m) for m in ours.masks]
    _same(_hyps(espnet.nbests), _hyps(ours.nbests))
    _same(_hyps(tail_of_one.nbests), _hyps(ours.nbests))


def _language_model(root, vocab):
    """A tiny ESPnet RNN language model on disk (random weights): (config.yaml, model.pth)."""
    from espnet2.tasks.lm import LMTask

    args = LMTask.get_parser().parse_args([])
    args.token_list, args.lm, args.lm_conf, args.model_conf = str(vocab["token_list"]), "seq_rnn", {"unit": 16}, {}
    torch.manual_seed(0)
    model = LMTask.build_model(args)
    with torch.no_grad():  # far from uniform, so that it changes the search
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    return save_model_dir(root, vars(args), model.state_dict())


def test_decode_batch_with_a_language_model_takes_espnets_search(gated_dir, tmp_path, vocab):
    config, model_file = gated_dir
    lm_config, lm_file = _language_model(tmp_path / "lm", vocab)
    with_lm = GatedSpeech2Text(
        str(config), str(model_file), lm_train_config=str(lm_config), lm_file=str(lm_file), lm_weight=1.0, **DECODE
    )
    without = GatedSpeech2Text(str(config), str(model_file), **DECODE)
    speeches = _speeches([15000, 12000, 13500], seed=7)
    langs, tasks = ["<deu>", "<fra>", "<ita>"], ["<asr>", "<st_eng>", "<asr>"]
    batched = with_lm.decode_batch(speeches, langs, tasks)
    single = [
        with_lm.decode(s, lang_sym=la, task_sym=t).nbests[0] for s, la, t in zip(speeches, langs, tasks, strict=True)
    ]
    _same(_hyps(batched.nbests), _hyps(single))
    assert _hyps(batched.nbests) != _hyps(without.decode_batch(speeches, langs, tasks).nbests)  # the LM counted
    assert batched.timing["ctc_s"] is None  # ESPnet's search does not time its CTC scorer: unknown, not 0
