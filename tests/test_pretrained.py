"""--init_from: a dense OWSM-layout model directory becomes a gated model that decodes like it,
fine-tunes with ESPnet's trainer, and can learn new languages without changing old outputs."""

import argparse
import importlib.util
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from conftest import DECODER_CONF, ENCODER_CONF, WORDS, data_path_args, random_sentence
from espnet2.bin.s2t_inference import Speech2Text
from espnet2.tasks.s2t import S2TTask
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump
from test_espnet_cli import write_data_dir

from espnet_gated.adapter import use_prompt_ctc
from espnet_gated.bin import s2t_inference
from espnet_gated.bin.init_from import main as init_from_main
from espnet_gated.data.symbols import CONTEXT_TOKEN
from espnet_gated.data.tokenizer import train_bpe
from espnet_gated.decoding.inference import GatedSpeech2Text
from espnet_gated.plugin.tasks import GatedS2TTask
from espnet_gated.plugin.weights import GATING_STATE
from espnet_gated.sharing.init_from import backbone_modules, init_from
from espnet_gated.sharing.locate import PretrainedError, fetch, locate

OWSM_LANGS = ["deu", "eng", "fra", "ita", "spa"]  # OWSM keeps them sorted: <abk> .. <zul>
OWSM_TASKS = ["asr", "st_deu", "st_eng", "st_fra"]
TIMES = [f"<{t:.2f}>" for t in range(31)]  # OWSM: <0.00> .. <30.00> every 0.02 s; every 1 s here
EXP = "exp/s2t_train_s2t_ebf_tiny_raw_bpe90"
STATS = "exp/s2t_stats_raw_bpe90/train/feats_stats.npz"
BPE = "data/token_list/bpe_unigram90/bpe.model"
MODEL = "valid.total_count.ave_5best.till45epoch.pth"
N_MELS = 20


def make_owsm_dir(
    root: Path,
    encoder_conf: dict = None,
    decoder_conf: dict = None,
    n_mels: int = N_MELS,
    num_att_plot: int = 0,
) -> Path:
    """A dense ESPnet S2T model in the layout of the OWSM v3.1 hub snapshot: exp/<train>/config.yaml
    (token list inline, bpemodel and stats file relative), the averaged .pth, the BPE model, the stats.
    The default architecture is v3.1's with tiny sizes; :data:`V4_ENCODER` etc. make a v4 one."""
    rng = random.Random(0)
    text = root / "bpe_text.txt"
    root.mkdir(parents=True)
    text.write_text("\n".join(random_sentence(rng, 6) for _ in range(300)) + "\n")
    symbols = ["<na>", "<nolang>", *(f"<{x}>" for x in OWSM_LANGS + OWSM_TASKS), "<notimestamps>", *TIMES]
    bpe, tokens = train_bpe(text, root / "bpe", 90, symbols, model_type="unigram")
    (root / BPE).parent.mkdir(parents=True)
    os.replace(bpe, root / BPE)
    token_list = tokens.read_text().split()
    shutil.rmtree(root / "bpe")
    text.unlink()

    stats = root / STATS
    stats.parent.mkdir(parents=True)
    g = np.random.default_rng(0)
    count, mean, var = 1000.0, g.normal(-5, 1, n_mels), g.uniform(1, 4, n_mels)
    np.savez(stats, count=np.array(count), sum=mean * count, sum_square=(var + mean**2) * count)
    (stats.parents[1] / "config.yaml").write_text("collect_stats: true\nencoder: e_branchformer\n")

    args = S2TTask.get_parser().parse_args([])
    settings = dict(
        token_list=token_list,
        token_type="bpe",
        bpemodel=BPE,
        input_size=None,
        frontend="default",
        frontend_conf=dict(n_fft=512, win_length=400, hop_length=160, n_mels=n_mels, fs="16k"),
        specaug="specaug",
        specaug_conf=dict(
            apply_time_warp=False,
            apply_freq_mask=True,
            freq_mask_width_range=[0, 5],
            apply_time_mask=True,
            time_mask_width_ratio_range=[0.0, 0.05],
            num_time_mask=2,
        ),
        normalize="global_mvn",
        normalize_conf=dict(stats_file=STATS),
        encoder="e_branchformer",
        encoder_conf=encoder_conf or {**ENCODER_CONF, "num_blocks": 2, "dropout_rate": 0.05},
        decoder="transformer",
        decoder_conf=decoder_conf or {**DECODER_CONF, "num_blocks": 2},
        model="espnet",
        model_conf=dict(ctc_weight=0.3, lsm_weight=0.1, length_normalized_loss=False, sym_na="<na>"),
        ctc_conf=dict(dropout_rate=0.0, ctc_type="builtin", reduce=True, zero_infinity=True),
        preprocessor="s2t",
        preprocessor_conf=dict(
            text_prev_name="text_prev",
            text_ctc_name="text_ctc",
            fs=16000,
            na_symbol="<na>",
            speech_length=2,
            speech_resolution=1.0,
            speech_init_silence=1,
            text_prev_apply_prob=0.5,
            time_apply_prob=0.5,
            notime_symbol="<notimestamps>",
            first_time_symbol="<0.00>",
            last_time_symbol="<30.00>",
        ),
        output_dir=EXP,
        init=None,
        optim="adamw",
        version="202310",
        num_att_plot=num_att_plot,
    )
    for key, value in settings.items():
        setattr(args, key, value)
    cwd = os.getcwd()
    os.chdir(root)  # the recorded paths are relative to the model directory
    try:
        torch.manual_seed(0)
        model = S2TTask.build_model(args)
    finally:
        os.chdir(cwd)
    with torch.no_grad():  # a model whose outputs are far from uniform, so that decoding is not trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    (root / EXP).mkdir(parents=True)
    torch.save(model.state_dict(), root / EXP / MODEL)
    with open(root / EXP / "config.yaml", "w") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    (root / "README.md").write_text("tiny OWSM-layout model for tests\n")
    return root


#: ESPnet's OWSM v4 architecture (egs2/owsm_v4/s2t1/conf/train_conv2d8_size384_e6_d6_mel128.yaml: every
#: encoder and decoder key as there, the sizes scaled down): conv2d8 subsampling, 128 mel bins, flash
#: attention and gradient checkpointing switched on
V4_ENCODER = dict(
    output_size=32, attention_heads=2, attention_layer_type="selfattn", pos_enc_layer_type="abs_pos",
    rel_pos_type="latest", cgmlp_linear_units=64, cgmlp_conv_kernel=3, use_linear_after_conv=False,
    gate_activation="identity", num_blocks=2, dropout_rate=0.05, positional_dropout_rate=0.05,
    attention_dropout_rate=0.0, input_layer="conv2d8", layer_drop_rate=0.0, linear_units=64,
    positionwise_layer_type="linear", use_ffn=True, macaron_ffn=True, merge_conv_kernel=3, use_flash_attn=True,
    gradient_checkpoint_layers=[0, 1, 2],
)  # fmt: skip
V4_DECODER = dict(
    attention_heads=2, linear_units=64, num_blocks=2, dropout_rate=0.05, positional_dropout_rate=0.05,
    self_attention_dropout_rate=0.0, src_attention_dropout_rate=0.0, use_flash_attn=True,
    gradient_checkpoint_layers=[1, 2],
)  # fmt: skip
V4_MELS = 128
#: keys of ESPnet's development branch in OWSM v3.1 hub configs before their fix (ESPnet issue #5973)
DEV_ENCODER_KEYS = dict(attention_qk_norm=False, attention_use_flash_attn=True)
DEV_DECODER_KEYS = dict(
    self_attention_qk_norm=False, src_attention_qk_norm=False,
    self_attention_use_flash_attn=True, src_attention_use_flash_attn=True,
)  # fmt: skip


@pytest.fixture(scope="module")
def owsm(tmp_path_factory):
    return make_owsm_dir(tmp_path_factory.mktemp("hub") / "owsm_v3.1_tiny")


@pytest.fixture(scope="module")
def converted(owsm, tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "init_owsm"
    init_from(owsm, out)
    return out


def speech(seconds: float, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.2 * np.sin(2 * np.pi * g.uniform(150, 400) * t) + 0.05 * g.standard_normal(t.size)).astype(np.float32)


def dense_speech2text(owsm: Path, **kwargs) -> Speech2Text:
    cwd = os.getcwd()
    os.chdir(owsm)  # as ESPnet resolves a packed model's relative paths
    try:
        return Speech2Text(
            s2t_train_config=f"{EXP}/config.yaml", s2t_model_file=f"{EXP}/{MODEL}", bpemodel=str(owsm / BPE), **kwargs
        )
    finally:
        os.chdir(cwd)


DECODE = dict(beam_size=3, ctc_weight=0.3, maxlenratio=0.5, lang_sym="<deu>", task_sym="<asr>", nbest=1)


def test_located_files_of_the_hub_layout(owsm):
    pre = locate(owsm)
    assert pre.config_file == owsm / EXP / "config.yaml"  # not the collect_stats config
    assert pre.model_file == owsm / EXP / MODEL
    assert pre.bpemodel == owsm / BPE and pre.stats_file == owsm / STATS
    assert pre.token_list[:4] == ["<blank>", "<unk>", "<na>", "<nolang>"] and pre.token_list[-3:] == [
        "<sos>",
        "<eos>",
        "<sop>",
    ]


def assert_decodes_like_the_dense_model(owsm: Path, converted: Path, gate_modes=("all_open", "predicted")) -> None:
    """ESPnet's dense model of ``owsm`` and the gated model of ``converted``, every gate open and
    as predicted by a fresh gate predictor (which keeps every module), give the same hypotheses."""
    dense = dense_speech2text(owsm, **DECODE)
    use_prompt_ctc(dense.beam_search)  # CTC scoring as ours: without the <deu><asr><notimestamps> prompt
    for gate_mode in gate_modes:
        gated = GatedSpeech2Text(
            s2t_train_config=converted / "config.yaml",
            s2t_model_file=converted / "init.pth",
            gate_mode=gate_mode,
            **DECODE,
        )
        for seed, seconds in enumerate((1.0, 1.6, 2.5)):
            x = speech(seconds, seed)
            decoding = gated.decode(x)
            want, got = dense(x), decoding.nbests[0]
            assert [h[:4] for h in got] == [h[:4] for h in want]  # text, tokens, ids, text without specials
            assert len(want[0][2]) > 3, "the test model should say something"
            torch.testing.assert_close(got[0][4].score, want[0][4].score)
            assert all(bool(m.all()) for m in decoding.masks[0])


def assert_key_sets_checked(converted: Path, dense_model_file: Path) -> None:
    """init.pth holds every dense weight unchanged and only the gating state (the gate predictor,
    the sparsity controller's multipliers) on top."""
    dense, gated = torch.load(dense_model_file), torch.load(converted / "init.pth")
    gating = {k for k in gated if k.startswith(GATING_STATE)}
    assert set(gated) - set(dense) == gating and any(k.startswith("gate_predictor.") for k in gating)
    assert set(dense) <= set(gated) and all(torch.equal(gated[k], v) for k, v in dense.items())
    record = yaml.safe_load((converted / "init_from.yaml").read_text())
    assert record["fresh_keys"] == len(gating)


def test_init_from_decodes_like_the_dense_model(owsm, converted):
    files = sorted(p.name for p in converted.iterdir())
    assert files == sorted(
        ["bpe.model", "config.yaml", "feats_stats.npz", "init.pth", "init_from.yaml", "tokens.txt", "train.yaml"]
    )
    config = yaml.safe_load((converted / "train.yaml").read_text())
    assert (config["encoder"], config["decoder"], config["model"]) == (
        "gated_e_branchformer",
        "gated_transformer",
        "gated_espnet",
    )
    assert config["encoder_conf"]["output_size"] == ENCODER_CONF["output_size"]
    assert config["normalize_conf"]["stats_file"] == str(converted / "feats_stats.npz")
    assert (converted / "bpe.model").read_bytes() == (owsm / BPE).read_bytes()
    assert (converted / "tokens.txt").read_text().split() == locate(owsm).token_list
    assert config["num_att_plot"] == 0  # OWSM's, not ESPnet's default of 3
    assert_key_sets_checked(converted, owsm / EXP / MODEL)
    assert_decodes_like_the_dense_model(owsm, converted)


#: the input layer's linear projection: ``embed.out.0.*`` in ESPnet 202511 (every OWSM hub model), ``embed.out.*``
#: in 202611, whose input layer upgrades the old names when a state dict is loaded
OLD_EMBED_NAMES = {
    "encoder.embed.out.weight": "encoder.embed.out.0.weight",
    "encoder.embed.out.bias": "encoder.embed.out.0.bias",
}


def with_old_embed_names(model_file: Path) -> None:
    """Rewrite ``model_file`` as ESPnet 202511 saved it (a no-op where 202511 is installed)."""
    state = torch.load(model_file, map_location="cpu")
    torch.save({OLD_EMBED_NAMES.get(k, k): v for k, v in state.items()}, model_file)
    assert "encoder.embed.out.0.weight" in torch.load(model_file, map_location="cpu")


def test_a_checkpoint_with_202511s_names_loads_and_decodes(owsm, converted, tmp_path):
    """A dense OWSM-layout checkpoint and a gated one, both with 202511's input-layer names: init_from,
    from_pretrained and the s2t_inference command line load them and decode as from the current names."""
    old = tmp_path / "owsm_202511"
    shutil.copytree(owsm, old)
    with_old_embed_names(old / EXP / MODEL)
    init_from(old, tmp_path / "init")
    assert_decodes_like_the_dense_model(owsm, tmp_path / "init", gate_modes=("all_open",))

    gated = tmp_path / "gated_202511"
    shutil.copytree(converted, gated)
    with_old_embed_names(gated / "init.pth")
    x = speech(1.6, 4)
    want = GatedSpeech2Text.from_pretrained(str(converted), s2t_model_file=str(converted / "init.pth"), **DECODE)(x)
    got = GatedSpeech2Text.from_pretrained(str(gated), s2t_model_file=str(gated / "init.pth"), **DECODE)(x)
    assert [h[:4] for h in got] == [h[:4] for h in want] and len(want[0][2]) > 3

    wav = tmp_path / "a.wav"
    soundfile.write(wav, x, 16000)
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\n")
    args = ["--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound", "--lang_sym", "deu"]
    args += ["--task_sym", "asr", "--s2t_train_config", str(gated / "config.yaml")]
    args += ["--s2t_model_file", str(gated / "init.pth"), "--output_dir", str(tmp_path / "decode")]
    for key, value in DECODE.items():
        if key not in ("lang_sym", "task_sym"):
            args += [f"--{key}", str(value)]
    s2t_inference.main(args)
    assert (tmp_path / "decode" / "1best_recog" / "text").read_text() == f"utt1 {want[0][0]}\n"


def test_owsm_v4_layout_loads_and_decodes_like_the_dense_model(tmp_path):
    v4 = make_owsm_dir(tmp_path / "owsm_v4_tiny", V4_ENCODER, V4_DECODER, n_mels=V4_MELS)
    out = tmp_path / "init_v4"
    init_from(v4, out, train_config=_recipe(tmp_path, num_att_plot=None))
    config = yaml.safe_load((out / "train.yaml").read_text())
    assert config["encoder_conf"]["input_layer"] == "conv2d8" and config["frontend_conf"]["n_mels"] == V4_MELS
    assert config["encoder_conf"]["use_flash_attn"] is True and config["num_att_plot"] == 0
    assert_key_sets_checked(out, v4 / EXP / MODEL)
    assert_decodes_like_the_dense_model(v4, out, gate_modes=("all_open",))


def _recipe(tmp_path: Path, **settings) -> Path:
    recipe = {"optim": "adam", "num_att_plot": 2, **settings}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in recipe.items() if v is not None}))
    return path


def test_dev_branch_config_keys_are_mapped_and_said(owsm, tmp_path):
    """A v3.1 hub config with ESPnet's development-branch keys: stock ESPnet 202511 cannot build it;
    init_from maps them, says which, and the model decodes like the clean one."""
    dev = tmp_path / "owsm_dev_keys"
    shutil.copytree(owsm, dev)
    config = yaml.safe_load((dev / EXP / "config.yaml").read_text())
    config["encoder_conf"].update(DEV_ENCODER_KEYS)
    config["decoder_conf"].update(DEV_DECODER_KEYS)
    (dev / EXP / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(TypeError, match="attention_qk_norm"):
        stats = {**config["normalize_conf"], "stats_file": str(owsm / STATS)}
        S2TTask.build_model(argparse.Namespace(**{**config, "normalize_conf": stats}))
    out = tmp_path / "init_dev"
    init_from(dev, out, train_config=_recipe(tmp_path))
    record = yaml.safe_load((out / "init_from.yaml").read_text())
    fixes = "\n".join(record["config_fixes"])
    for key in [*DEV_ENCODER_KEYS, *DEV_DECODER_KEYS]:
        assert key in fixes, key
    assert "to encoder_conf.qk_norm=False" in fixes and "to decoder_conf.use_flash_attn=True" in fixes
    train = yaml.safe_load((out / "train.yaml").read_text())
    assert not set(DEV_ENCODER_KEYS) & set(train["encoder_conf"]) and train["decoder_conf"]["qk_norm"] is False
    assert train["num_att_plot"] == 2  # the recipe's setting wins over OWSM's
    assert_key_sets_checked(out, owsm / EXP / MODEL)
    assert_decodes_like_the_dense_model(owsm, out, gate_modes=("all_open",))

    config["decoder_conf"]["src_attention_qk_norm"] = True  # one ESPnet 202511 qk_norm cannot say both
    (dev / EXP / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PretrainedError, match="self_attention_qk_norm=False, .*src_attention_qk_norm=True disagree"):
        locate(dev)
    config["decoder_conf"]["src_attention_qk_norm"] = False
    config["encoder_conf"]["attention_sparse_topk"] = 8  # a key no mapping knows: named, not a TypeError
    (dev / EXP / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PretrainedError, match="encoder_conf has options .* does not take: attention_sparse_topk"):
        locate(dev)


def test_fine_tune_with_espnets_trainer_from_the_init_checkpoint(owsm, tmp_path):
    recipe = dict(
        encoder_conf=dict(output_size=999, dropout_rate=0.1),  # the size is ignored, the dropout applies
        model_conf=dict(gate_conf=dict(hidden_size=16, context_dim=8), sparsity_conf=dict(decoder_target=0.5)),
        preprocessor_conf=dict(speech_length=None, time_apply_prob=1.0, text_prev_apply_prob=0.0),
        optim="adam",
        optim_conf=dict(lr=0.01),
        batch_type="unsorted",
        batch_size=3,
        max_epoch=1,
        num_workers=0,
        seed=0,
    )
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "init"
    assert (
        init_from_main(
            [
                *("--src", str(owsm), "--out", str(out), "--train_config", str(tmp_path / "train.yaml")),
                *("--add_langs", "xyz", "--freeze_backbone", "true"),
            ]
        )
        == 0
    )
    config = yaml.safe_load((out / "train.yaml").read_text())
    assert config["encoder_conf"]["dropout_rate"] == 0.1 and config["encoder_conf"]["output_size"] == 32
    assert config["preprocessor_conf"]["speech_length"] is None
    assert config["preprocessor_conf"]["first_time_symbol"] == "<0.00>"  # the rest is OWSM's
    assert config["model_conf"]["sym_na"] == "<na>" and config["model_conf"]["sparsity_conf"]["decoder_target"] == 0.5
    record = yaml.safe_load((out / "init_from.yaml").read_text())
    assert record["ignored_recipe_keys"] == ["encoder_conf.output_size=999 (pretrained: 32)"]
    assert record["added_tokens"] == ["<xyz>"]
    assert "gate_predictor" not in config["freeze_param"] and {"encoder", "decoder", "ctc"} <= set(
        config["freeze_param"]
    )

    rng = random.Random(1)
    pairs = [("xyz", "asr"), ("deu", "asr"), ("fra", "st_eng")]
    data = tmp_path / "data"
    write_data_dir(data, [(f"utt{i}", *pairs[i % 3], random_sentence(rng, 3)) for i in range(6)])
    data_args = data_path_args(data, shape_files=True)
    exp = tmp_path / "exp"
    GatedS2TTask.main(
        cmd=[
            *("--config", str(out / "train.yaml"), "--init_param", str(out / "init.pth")),
            *("--token_list", str(out / "tokens.txt"), "--bpemodel", str(out / "bpe.model")),
            *data_args,
            *("--output_dir", str(exp), "--ngpu", "0"),
        ]
    )
    init = torch.load(out / "init.pth")
    tuned = torch.load(exp / "1epoch.pth")
    assert set(tuned) == set(init)
    changed = {k for k in init if not torch.equal(init[k].to(tuned[k].dtype), tuned[k])}  # the trainer casts to fp32
    assert changed and all(k.startswith(GATING_STATE) for k in changed)  # only the predictor (and its controller)
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["model"] == "gated_espnet" and "<xyz>" in saved["token_list"]


def _old_ids(old, new):
    return torch.tensor([new.index(t) for t in old])


def test_new_language_keeps_every_old_weight_and_output(owsm, tmp_path):
    out = tmp_path / "init"
    init_from(owsm, out, add_langs=["xyz", "fin=deu"], add_tasks=["st_xyz"])
    old = locate(owsm).token_list
    new = (out / "tokens.txt").read_text().split()
    langs = [t for t in new if t in {"<deu>", "<eng>", "<fin>", "<fra>", "<ita>", "<spa>", "<xyz>"}]
    block = new.index("<deu>")
    assert new[block : block + 7] == langs == ["<deu>", "<eng>", "<fin>", "<fra>", "<ita>", "<spa>", "<xyz>"]
    assert new[new.index("<st_fra>") + 1] == "<st_xyz>" and new[-3:] == ["<sos>", "<eos>", "<sop>"]
    assert [t for t in new if t not in {"<fin>", "<xyz>", "<st_xyz>"}] == old

    dense_state = torch.load(owsm / EXP / MODEL)
    state = torch.load(out / "init.pth")
    ids = _old_ids(old, new)
    vocab_keys = {"decoder.embed.0.weight", "decoder.output_layer.weight", "decoder.output_layer.bias"}
    vocab_keys |= {"ctc.ctc_lo.weight", "ctc.ctc_lo.bias"}
    for key, value in dense_state.items():
        if key in vocab_keys:
            assert state[key].shape[0] == len(new)
            assert torch.equal(state[key][ids], value), key
            assert torch.equal(state[key][new.index("<fin>")], value[old.index("<deu>")]), key
            lang_rows = value[[old.index(f"<{x}>") for x in OWSM_LANGS]]
            torch.testing.assert_close(state[key][new.index("<xyz>")], lang_rows.mean(0))
        else:
            assert torch.equal(state[key], value), key

    # outputs for old tokens: same decoder and CTC logits, with the old tokens' ids mapped
    cwd = os.getcwd()
    os.chdir(owsm)
    try:
        dense, _ = S2TTask.build_model_from_file(f"{EXP}/config.yaml", f"{EXP}/{MODEL}")
    finally:
        os.chdir(cwd)
    gated, _ = S2TTask.build_model_from_file(out / "config.yaml", out / "init.pth")
    dense.eval(), gated.eval()
    x = torch.from_numpy(speech(1.2, 3))[None]
    lengths = torch.tensor([x.size(1)])
    prefix = ["<deu>", "<asr>", "<notimestamps>", "▁hallo", "▁welt"]
    with torch.no_grad():
        enc, enc_lens = dense.encode(x, lengths)
        genc, _, _ = gated.encode_gated(x, lengths, None, torch.ones(2, 4), torch.ones(2, 3))
        torch.testing.assert_close(genc, enc, rtol=0, atol=0)
        ys = torch.tensor([[old.index(t) for t in ["<sos>", *prefix]]])
        gys = torch.tensor([[new.index(t) for t in ["<sos>", *prefix]]])
        want, _ = dense.decoder(enc, enc_lens, ys, torch.tensor([ys.size(1)]))
        got, _ = gated.decoder(enc, enc_lens, gys, torch.tensor([ys.size(1)]))
        torch.testing.assert_close(got[..., ids], want, rtol=0, atol=1e-6)
        torch.testing.assert_close(gated.ctc.ctc_lo(enc)[..., ids], dense.ctc.ctc_lo(enc), rtol=0, atol=1e-6)

    # the new tokens are single sentencepiece pieces; old text tokenizes as before
    tok_old = build_tokenizer("bpe", bpemodel=str(owsm / BPE))
    tok_new = build_tokenizer("bpe", bpemodel=str(out / "bpe.model"))
    ids_new = TokenIDConverter(new).tokens2ids(tok_new.text2tokens("<xyz><st_xyz><notimestamps> hallo welt"))
    assert ids_new[1:4] == [new.index("<xyz>"), new.index("<st_xyz>"), new.index("<notimestamps>")]
    sentence = "<fra><asr><notimestamps> " + " ".join(WORDS[:8])
    assert tok_new.text2tokens(sentence) == tok_old.text2tokens(sentence)


def test_mismatched_model_dir_names_the_bad_keys(owsm, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(owsm, bad)
    state = torch.load(bad / EXP / MODEL)
    del state["encoder.encoders.1.attn.linear_q.weight"]
    state["encoder.extra_adapter.weight"] = torch.zeros(3)
    state["decoder.output_layer.bias"] = torch.zeros(7)
    torch.save(state, bad / EXP / MODEL)
    out = tmp_path / "out"
    with pytest.raises(PretrainedError) as err:
        init_from(bad, out)
    message = str(err.value)
    assert str(bad / EXP / MODEL) in message and str(bad / EXP / "config.yaml") in message
    assert "missing keys (1): encoder.encoders.1.attn.linear_q.weight" in message
    assert "unexpected keys (1): encoder.extra_adapter.weight" in message
    assert "decoder.output_layer.bias (7,) vs (" in message
    assert "gate_predictor" not in message
    assert not (out / "init.pth").exists() and not (out / "init_from.yaml").exists()

    config = yaml.safe_load((owsm / EXP / "config.yaml").read_text())
    config["encoder_conf"]["num_blocks"] = 3  # the config says 3 layers, the weights have 2
    (bad / EXP / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(owsm / EXP / MODEL, bad / EXP / MODEL)
    with pytest.raises(PretrainedError, match=r"missing keys \(\d+\): encoder\.encoders\.2\."):
        init_from(bad, out)


def test_recorded_paths_elsewhere_are_found_in_the_dir_and_ambiguity_is_named(owsm, tmp_path):
    moved = tmp_path / "snapshot"
    shutil.copytree(owsm, moved)
    config = yaml.safe_load((moved / EXP / "config.yaml").read_text())
    (moved / "tokens.txt").write_text("".join(f"{t}\n" for t in config["token_list"]))
    config["token_list"] = "/home/owsm/espnet/egs2/owsm_v3.1/s2t1/data/token_list/tokens.txt"
    config["bpemodel"] = f"/home/owsm/espnet/egs2/owsm_v3.1/s2t1/{BPE}"
    config["normalize_conf"]["stats_file"] = f"/home/owsm/espnet/egs2/owsm_v3.1/s2t1/{STATS}"
    (moved / EXP / "config.yaml").write_text(yaml.safe_dump(config))
    pre = locate(moved)
    assert (pre.bpemodel, pre.stats_file) == (moved / BPE, moved / STATS)
    assert pre.token_list == locate(owsm).token_list

    shutil.copy(moved / EXP / MODEL, moved / EXP / "valid.acc.best.pth")
    with pytest.raises(PretrainedError, match=r"several model \.pth files .*valid.acc.best.pth.*--model_file"):
        locate(moved)
    assert locate(moved, model_file=moved / EXP / MODEL).model_file == moved / EXP / MODEL
    (moved / "meta.yaml").write_text(
        yaml.safe_dump(
            {"files": {"s2t_model_file": f"{EXP}/{MODEL}"}, "yaml_files": {"s2t_train_config": f"{EXP}/config.yaml"}}
        )
    )
    assert locate(moved).model_file == moved / EXP / MODEL  # ESPnet's packing names it
    (moved / BPE).unlink()
    with pytest.raises(PretrainedError, match=r"config.yaml: bpemodel '/home/owsm/.*bpe.model' not found"):
        locate(moved)


def test_hub_name_offline_says_how_to_pass_a_local_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(PretrainedError) as err:
        fetch("espnet/owsm_v3.1_ebf", cache_dir=tmp_path / "hf")
    message = str(err.value)
    assert "espnet/owsm_v3.1_ebf" in message and "--init_from DIR" in message
    assert "git clone https://huggingface.co/espnet/owsm_v3.1_ebf" in message
    if importlib.util.find_spec("huggingface_hub") is not None:  # else: the message below
        assert "could not be fetched from the Hugging Face hub" in message and "offline" in message
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as where the hub extra is not installed
    with pytest.raises(PretrainedError, match=r'needs huggingface_hub \(pip install "espnet-gated\[hub\]"'):
        fetch("espnet/owsm_v3.1_ebf", option="from_pretrained(DIR)")
    with pytest.raises(PretrainedError, match="no such model directory"):
        fetch(tmp_path / "missing")


def test_unknown_architecture_is_refused(owsm, tmp_path):
    other = tmp_path / "conformer"
    shutil.copytree(owsm, other)
    config = yaml.safe_load((other / EXP / "config.yaml").read_text())
    config["encoder"] = "conformer"
    (other / EXP / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PretrainedError, match="encoder 'conformer' cannot be gated"):
        locate(other)


def test_backbone_modules_cover_everything_but_the_gate_predictor(converted):
    model, _ = S2TTask.build_model_from_file(converted / "config.yaml", converted / "init.pth")
    frozen = backbone_modules(model)
    assert set(frozen) <= {"frontend", "normalize", "encoder", "decoder", "ctc"}  # what s2t.sh freezes
    assert {k.split(".")[0] for k, _ in model.named_parameters()} == set(frozen) | {"gate_predictor"}


@pytest.mark.slow
def test_engine_stage5_prepares_the_init_dir(owsm, tmp_path):
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    (recipe / "conf").mkdir()
    (recipe / "data").mkdir()  # as stages 1 and 4 leave them
    (recipe / "dump/raw").mkdir(parents=True)
    (recipe / "dump/raw/test_sets.txt").write_text("")
    (recipe / "local/data.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    (recipe / "local/data.sh").chmod(0o755)
    (recipe / "conf/train.yaml").write_text(yaml.safe_dump({"max_epoch": 1, "optim": "adam"}))
    (recipe / "conf/decode.yaml").write_text("beam_size: 2\n")
    (recipe / "conf/sweep.yaml").write_text("max_epoch: 1\n")
    engine = Path(__file__).resolve().parents[1] / "egs2/TEMPLATE/s2t1/s2t.sh"
    proc = subprocess.run(
        [str(engine), "--stage", "5", "--stop_stage", "5", "--python", sys.executable, "--init_from", str(owsm)]
        + ["--add_langs", "xyz"],
        cwd=recipe,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    init_dir = recipe / "exp" / f"init_{owsm.name}"
    assert (init_dir / ".stage5.done").is_file() and (init_dir / "init.pth").is_file()
    assert "<xyz>" in (init_dir / "tokens.txt").read_text().split()
    assert yaml.safe_load((init_dir / "train.yaml").read_text())["max_epoch"] == 1


def test_a_gated_model_dir_can_be_extended_too(converted, tmp_path):
    """A gated model (here: init_from's own output) keeps its gate predictor, re-indexed by context token."""
    init_from(converted, tmp_path / "more", add_langs=["xyz"])
    old = (converted / "tokens.txt").read_text().split()
    new = (tmp_path / "more/tokens.txt").read_text().split()
    before, after = torch.load(converted / "init.pth"), torch.load(tmp_path / "more/init.pth")
    assert set(before) == set(after)
    ctx_old, ctx_new = [t for t in old if CONTEXT_TOKEN.match(t)], [t for t in new if CONTEXT_TOKEN.match(t)]
    rows = torch.tensor([0] + [ctx_new.index(t) + 1 for t in ctx_old])
    per_context = (
        "gate_predictor.lang_embed.weight",
        "gate_predictor.task_embed.weight",
        "gate_predictor.context_counts",
    )
    for key in per_context:
        assert after[key].shape[0] == before[key].shape[0] + 1
        assert torch.equal(after[key][rows], before[key]), key
    new_row = ctx_new.index("<xyz>") + 1
    assert not after["gate_predictor.context_counts"][new_row].any()  # a new language was never trained
    per_token = ("decoder.embed", "decoder.output_layer", "ctc.", "gate_predictor.lang_", "gate_predictor.task_")
    per_token += ("gate_predictor.context_counts",)
    for key, value in before.items():
        if not key.startswith(per_token):
            assert torch.equal(after[key], value), key


def test_a_202511_checkpoint_whose_renamed_weights_do_not_fit_is_refused_in_one_line(converted, tmp_path):
    """A weight of another shape under a name the installed ESPnet upgrades when loading (202611: torch's
    many-line size mismatch): the one-line error names the file and the weight."""
    gated = tmp_path / "gated_202511"
    shutil.copytree(converted, gated)
    with_old_embed_names(gated / "init.pth")
    state = torch.load(gated / "init.pth", map_location="cpu")
    state["encoder.embed.out.0.weight"] = state["encoder.embed.out.0.weight"][:, :-1]
    torch.save(state, gated / "init.pth")
    with pytest.raises(ValueError, match=r"init\.pth.* not fit .*embed\.out\.(0\.)?weight") as error:
        GatedSpeech2Text.from_pretrained(str(gated), s2t_model_file=str(gated / "init.pth"), **DECODE)
    assert "\n" not in str(error.value)
