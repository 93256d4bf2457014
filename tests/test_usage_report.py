"""Module usage, FLOPs, the results directory end to end (CLI) and the sweep report."""

import json
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml
from conftest import build, model_args
from test_scoring import write_decode_set, write_ref_set

from espnet_gated.bin import score, sweep_report
from espnet_gated.recipe.usage import (
    USAGE_COLUMNS,
    ComputeCost,
    count_decoder_steps,
    keep_rate_rows,
    read_gates,
    read_usage_tsv,
    sparsity,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_OPEN = "enc=1111.1111.1111 dec=111.111.111"
ST_GATES = {"u1": "enc=1111.1011.1111 dec=111.101.111", "u2": "enc=1111.1111.1111 dec=011.111.111"}
TIMING = {"n_utts": 2, "wall_s": 1.0, "encoder_s": 0.4, "decoder_s": 0.5}


def write_config(path: Path, token_list, dense: bool = False) -> Path:
    """The tiny test model's training args as an ESPnet config.yaml."""
    path.write_text(yaml.safe_dump(vars(model_args(token_list, dense=dense))))
    return path


def assert_png(path: Path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(path).ndim == 3


def test_keep_rates_and_sparsity_from_gates_file(tmp_path):
    path = tmp_path / "gates"
    path.write_text("".join(f"{u} {g}\n" for u, g in ST_GATES.items()))
    masks = read_gates(path)
    rows = {(r["side"], r["layer"], r["module"]): r for r in keep_rate_rows("deu", "st_eng", list(masks.values()))}
    assert len(rows) == 3 * 4 + 3 * 3
    assert rows[("enc", 1, "attn")]["keep_rate"] == 0.5 and rows[("enc", 1, "cgmlp")]["keep_rate"] == 1.0
    assert rows[("dec", 0, "self_attn")]["keep_rate"] == 0.5 and rows[("dec", 1, "src_attn")]["keep_rate"] == 0.5
    assert rows[("dec", 2, "feed_forward")]["keep_rate"] == 1.0
    assert {r["n_utts"] for r in rows.values()} == {2}
    assert sparsity(masks.values(), "enc") == pytest.approx(1 / 24)
    assert sparsity(masks.values(), "dec") == pytest.approx(2 / 18)


def test_malformed_or_inconsistent_gates_name_file_and_utterance(tmp_path):
    path = tmp_path / "gates"
    path.write_text(f"u1 {ALL_OPEN}\nu2 enc=111.1111.1111 dec=111.111.111\n")
    with pytest.raises(ValueError, match=r"gates: utterance 'u2': malformed enc layer '111'"):
        read_gates(path)
    path.write_text(f"u1 {ALL_OPEN}\nu2 enc=1111.1111 dec=111.111.111\n")
    with pytest.raises(ValueError, match=r"gates: utterance 'u2' has .* layers"):
        read_gates(path)


def test_decoder_steps_count_text_tokens_and_eos():
    assert count_decoder_steps("<deu> <asr> <notimestamps> ▁hal lo ▁welt") == 4
    assert count_decoder_steps("") == 1


def test_encoder_frames_match_the_real_model(vocab, tmp_path):
    cost = ComputeCost(write_config(tmp_path / "config.yaml", vocab["token_list"], dense=True))
    assert not cost.cache_src_kv  # ESPnet's own decoder recomputes cross-attention keys/values
    model = build(vocab["token_list"], dense=True).eval()
    for n_samples in (4000, 12345, 16000):
        with torch.no_grad():
            _, lengths = model.encode(torch.randn(1, n_samples) * 0.1, torch.tensor([n_samples]))
        assert cost.encoder_frames(n_samples) == int(lengths[0])


def test_executed_flops_equal_dense_when_all_open_and_less_when_closed(vocab, tmp_path):
    cost = ComputeCost(write_config(tmp_path / "config.yaml", vocab["token_list"]))
    assert cost.cache_src_kv and cost.n_layers == {"enc": 3, "dec": 3}
    open_all = {"enc": [[1] * 4] * 3, "dec": [[1] * 3] * 3}
    macs = cost.utterance_macs(16000, 10, open_all, beam_size=3)
    assert macs["enc"] == macs["enc_dense"] > 0 and macs["dec"] == macs["dec_dense"] > 0
    assert cost.utterance_macs(16000, 10, None, beam_size=3) == macs
    closed = {"enc": [[1, 0, 1, 1], [1] * 4, [1] * 4], "dec": [[1, 1, 0], [1] * 3, [1] * 3]}
    macs = cost.utterance_macs(16000, 10, closed, beam_size=3)
    assert macs["enc"] < macs["enc_dense"] and macs["dec"] < macs["dec_dense"]
    assert cost.utterance_macs(16000, 10, None, beam_size=6)["dec_dense"] > 1.9 * macs["dec_dense"]
    with pytest.raises(ValueError, match=r"here: gate mask has 2 enc layers, the model 3"):
        cost.check({"enc": [[1] * 4] * 2, "dec": open_all["dec"]}, "here")


@pytest.fixture
def decoded(tmp_path):
    """Reference and decode dirs of one ASR set (all modules open) and one ST set (some closed)."""
    ref, dec = tmp_path / "ref", tmp_path / "decode"
    write_ref_set(ref, "test_deu_asr", "deu", "asr", {"u1": "Hallo Welt.", "u2": "Guten Tag"})
    write_ref_set(
        ref, "test_deu_st_eng", "deu", "st_eng", {"u1": "Hello world, how are you?", "u2": "Good day to you all."}
    )
    write_decode_set(
        dec,
        "test_deu_asr",
        {"u1": "hallo welt", "u2": "guten"},
        gates=dict.fromkeys(("u1", "u2"), ALL_OPEN),
        timing=TIMING,
    )
    write_decode_set(
        dec,
        "test_deu_st_eng",
        {"u1": "Hello world, how are you?", "u2": "Good day to you all."},
        "<deu> <st_eng> <notimestamps>",
        ST_GATES,
        TIMING,
    )
    return ref, dec


def score_cli(ref: Path, dec: Path, out: Path, config: Path, *options: str):
    score.main(
        ["--ref_root", str(ref), "--decode_dir", str(dec), "--test_sets", "test_deu_asr test_deu_st_eng"]
        + ["--config", str(config), "--beam_size", "3", "--out", str(out), *options]
    )


def test_score_cli_writes_the_results_directory(decoded, vocab, tmp_path):
    ref, dec = decoded
    out = tmp_path / "results"
    score_cli(ref, dec, out, write_config(tmp_path / "config.yaml", vocab["token_list"]))

    rows = {(r["test_set"], r["metric"]): r["value"] for r in json.loads((out / "scores.json").read_text())}
    assert rows[("test_deu_asr", "wer")] == pytest.approx(25.0)
    assert rows[("test_deu_st_eng", "bleu")] == pytest.approx(100.0)

    tsv = (out / "usage.tsv").read_text().splitlines()
    assert tsv[0] == "\t".join(USAGE_COLUMNS) == "lang\ttask\tside\tlayer\tmodule\tkeep_rate\tn_utts"
    usage = {(r["task"], r["side"], r["layer"], r["module"]): r["keep_rate"] for r in read_usage_tsv(out / "usage.tsv")}
    assert len(usage) == 2 * (12 + 9)
    assert usage[("st_eng", "enc", 1, "attn")] == 0.5 and usage[("asr", "enc", 1, "attn")] == 1.0
    assert usage[("st_eng", "dec", 1, "src_attn")] == 0.5

    for name in ("usage_deu_asr.png", "usage_deu_st_eng.png"):
        assert_png(out / name)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["enc_sparsity"] == pytest.approx(1 / 48) and summary["dec_sparsity"] == pytest.approx(2 / 36)
    assert 0 < summary["relative_flops"] < 1 and summary["relative_enc_flops"] < 1
    assert summary["decode_s_per_utt"] == pytest.approx(0.5) and summary["decoder_s_per_utt"] == pytest.approx(0.25)

    md = (out / "RESULTS.md").read_text()
    assert "| test set | lang | task | metric | value | utts |" in md
    assert "| test_deu_asr | deu | asr | wer | 25.00 | 2 |" in md
    assert "| layer | feed_forward_macaron | attn | cgmlp | feed_forward |" in md
    assert "| 1 | 1.00 | 0.50 | 1.00 | 1.00 |" in md  # ST encoder layer 1
    assert "![deu st_eng module usage](usage_deu_st_eng.png)" in md
    assert "| test_deu_asr | 2 | 0.5000 | 0.2000 | 0.2500 |" in md
    assert "tok:13a" in md
    compute = {tuple(line.split(" | ")[:2]): line for line in md.splitlines() if line.startswith("| deu | ")}
    assert compute[("| deu", "asr")].endswith("| 1.000 | 1.000 | 1.000 |")  # all modules open: dense cost
    rel_total = float(compute[("| deu", "st_eng")].rstrip(" |").rsplit("| ", 1)[1])
    assert rel_total < 1
    assert (out / "details/test_deu_asr.txt").is_file() and (out / "bleu_signatures.json").is_file()


def test_failed_scoring_leaves_previous_results_untouched(decoded, vocab, tmp_path):
    ref, dec = decoded
    out = tmp_path / "results"
    config = write_config(tmp_path / "config.yaml", vocab["token_list"])
    score_cli(ref, dec, out, config)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with open(dec / "test_deu_st_eng/1best_recog/gates", "a") as f:
        f.write(f"stray {ALL_OPEN}\n")
    with pytest.raises(SystemExit, match=r"test_deu_st_eng/1best_recog/gates: utterance 'stray' is not in the"):
        score_cli(ref, dec, out, config)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    fresh = tmp_path / "fresh"
    with pytest.raises(SystemExit) as error:
        score_cli(ref, dec, fresh, config)
    assert "\n" not in str(error.value)
    assert not fresh.exists() or not any(fresh.rglob("*"))


def write_run(results: Path, wer: float, bleu: float, enc: float, dec: float, flops: float, seconds: float):
    """A results directory as make_results writes it, reduced to what the sweep reads."""
    results.mkdir(parents=True)
    rows = [
        ("test_deu_asr", "deu", "asr", "wer", wer),
        ("macro_avg", "all", "asr", "wer", wer),
        ("micro_avg", "all", "asr", "wer", wer),
        ("test_deu_st_eng", "deu", "st_eng", "bleu", bleu),
        ("macro_avg", "all", "st_eng", "bleu", bleu),
        ("macro_avg", "all", "st_eng", "chrf", 50.0),
    ]
    keys = ("test_set", "lang", "task", "metric", "value")
    (results / "scores.json").write_text(json.dumps([{**dict(zip(keys, r, strict=True)), "n_utts": 2} for r in rows]))
    summary = dict(enc_sparsity=enc, dec_sparsity=dec, relative_flops=flops, decode_s_per_utt=seconds)
    (results / "summary.json").write_text(json.dumps(summary))


def test_sweep_report_compares_runs(tmp_path):
    write_run(tmp_path / "a", wer=10.0, bleu=20.0, enc=0.0, dec=0.0, flops=1.0, seconds=2.0)
    write_run(tmp_path / "b", wer=12.5, bleu=19.0, enc=0.1, dec=0.5, flops=0.6, seconds=1.0)
    out = tmp_path / "sweep"
    sweep_report.main(["--runs", f"t0.0={tmp_path / 'a'}", f"t0.5={tmp_path / 'b'}", "--out", str(out)])
    md = (out / "sweep.md").read_text()
    header = (
        "| run | enc sparsity | dec sparsity | WER test_deu_asr | WER asr avg | BLEU test_deu_st_eng | BLEU st_eng avg"
    )
    assert header + " | rel. FLOPs | rel. decode time |" in md
    assert "| t0.5 | 0.100 | 0.500 | 12.50 | 12.50 | 19.00 | 19.00 | 0.600 | 0.500 |" in md
    assert "| t0.0 | 0.000 | 0.000 | 10.00 | 10.00 | 20.00 | 20.00 | 1.000 | 1.000 |" in md
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["reference_run"] == "t0.0"
    assert [r["relative_decode_time"] for r in sweep["runs"]] == [1.0, 0.5]
    assert sweep["runs"][1]["averages"] == {"asr/wer": 12.5, "st_eng/bleu": 19.0, "st_eng/chrf": 50.0}
    assert_png(out / "sweep.png")
    with pytest.raises(SystemExit, match=r"c/scores.json: not found \(run x\)"):
        sweep_report.main(["--runs", f"x={tmp_path / 'c'}", "--out", str(out)])


def test_sweep_report_pairs_a_budget_point_with_the_fixed_run_of_its_target(tmp_path):
    write_run(tmp_path / "ref", wer=10.0, bleu=20.0, enc=0.0, dec=0.0, flops=1.0, seconds=2.0)
    write_run(tmp_path / "fixed", wer=12.0, bleu=19.0, enc=0.0, dec=0.5, flops=0.6, seconds=1.0)
    write_run(tmp_path / "budget", wer=12.5, bleu=18.0, enc=0.0, dec=0.5, flops=0.6, seconds=1.0)
    paired = tmp_path / "budget_vs_fixed"
    paired.mkdir()
    keys = ("test_set", "task", "metric", "reference", "gated", "change", "ci95")
    rows = [
        dict(zip(keys, row, strict=True))
        for row in (
            ("test_deu_asr", "asr", "wer", 12.0, 12.5, 0.5, [-1, 2]),
            ("macro_avg", "asr", "wer", 12.0, 12.5, 0.5, [-0.2, 1.3]),
            ("macro_avg", "st_eng", "bleu", 19.0, 18.0, -1, [-2.5, 0.25]),
        )
    ]
    (paired / "summary.json").write_text(json.dumps({"comparison": {"rows": rows}}))
    runs = [f"reference={tmp_path / 'ref'}", f"dec0.5={tmp_path / 'fixed'}", f"dec_budget@0.5={tmp_path / 'budget'}"]
    out = tmp_path / "sweep"
    sweep_report.main(["--runs", *runs, "--versus", f"dec_budget@0.5=dec0.5={paired}", "--out", str(out)])
    md = (out / "sweep.md").read_text()
    assert "| run | against | WER asr avg: change [95% CI] | BLEU st_eng avg: change [95% CI] |" in md
    assert "| dec_budget@0.5 | dec0.5 | +0.50 [-0.20, +1.30] | -1.00 [-2.50, +0.25] |" in md
    [pair] = json.loads((out / "sweep.json").read_text())["versus"]
    assert pair["changes"]["st_eng/bleu"] == {"reference": 19.0, "gated": 18.0, "change": -1, "ci95": [-2.5, 0.25]}
    assert "test_deu_asr" not in json.dumps(pair)  # the task averages, not the sets
    with pytest.raises(SystemExit, match=r"paired comparison of unknown run\(s\) \['dec0.25'\]"):
        sweep_report.main(["--runs", *runs, "--versus", f"dec_budget@0.5=dec0.25={paired}", "--out", str(out)])
    missing = f"dec_budget@0.5=dec0.5={tmp_path / 'missing'}"
    with pytest.raises(SystemExit, match=r"missing/summary.json: not found \(dec_budget@0.5 against dec0.5\)"):
        sweep_report.main(["--runs", *runs, "--versus", missing, "--out", str(out)])
    assert "| dec_budget@0.5 | dec0.5 |" in (out / "sweep.md").read_text()  # the report before the errors stays


def test_a_missed_target_is_reported_except_for_a_decode_with_every_gate_open(decoded, vocab, tmp_path, caplog):
    """The decoder skipped 2 of 36 modules against a target of 0.5: stage 13 says so loudly for the gated model,
    but not for the reference, which the recipe decodes with every gate open in the gated architecture."""
    ref, dec = decoded
    config = write_config(tmp_path / "config.yaml", vocab["token_list"])
    args = yaml.safe_load(config.read_text())
    args["model_conf"]["sparsity_conf"] = {"decoder_target": 0.5}
    config.write_text(yaml.safe_dump(args))
    score_cli(ref, dec, tmp_path / "gated", config)
    assert "decoder sparsity 0.056 misses its target 0.5 by more than 0.03" in caplog.text
    assert json.loads((tmp_path / "gated/summary.json").read_text())["targets"] == {"enc": None, "dec": 0.5}
    caplog.clear()
    score_cli(ref, dec, tmp_path / "reference", config, "--all_open")
    assert "misses its target" not in caplog.text
    assert "targets" not in json.loads((tmp_path / "reference/summary.json").read_text())
    assert "MISSES" not in (tmp_path / "reference/RESULTS.md").read_text()
