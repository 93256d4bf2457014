"""Shared fixtures: tiny ESPnet S2T models (dense and gated) built by ESPnet's task."""

import copy
import random
from pathlib import Path

import pytest
import torch

from espnet_gated.data.tokenizer import prefix_symbols, train_bpe
from espnet_gated.plugin.tasks import GatedS2TTask

LANGS = ["deu", "fra", "ita", "eng"]
TASKS = ["asr", "st_eng"]
WORDS = (
    "hallo welt guten tag haus katze bonjour le monde chat maison ciao mondo casa gatto "
    "the cat sat on a mat house world good day"
).split()

ENCODER_CONF = dict(
    output_size=32,
    attention_heads=2,
    attention_layer_type="selfattn",
    pos_enc_layer_type="abs_pos",
    rel_pos_type="latest",
    cgmlp_linear_units=64,
    cgmlp_conv_kernel=3,
    use_linear_after_conv=False,
    gate_activation="identity",
    num_blocks=3,
    dropout_rate=0.0,
    positional_dropout_rate=0.0,
    attention_dropout_rate=0.0,
    input_layer="conv2d",
    linear_units=64,
    use_ffn=True,
    macaron_ffn=True,
    merge_conv_kernel=3,
)
DECODER_CONF = dict(
    attention_heads=2,
    linear_units=64,
    num_blocks=3,
    dropout_rate=0.0,
    positional_dropout_rate=0.0,
    self_attention_dropout_rate=0.0,
    src_attention_dropout_rate=0.0,
)
FRONTEND_CONF = dict(n_fft=512, win_length=400, hop_length=160, n_mels=20)


def tiny_train_config(sparsity_conf: dict, **training) -> dict:
    """The YAML training config of a tiny gated model (2 + 2 layers, the recipe's s2t
    preprocessor without padding) for ESPnet's trainer; ``training`` adds or overrides keys."""
    return {
        "frontend": "default",
        "frontend_conf": FRONTEND_CONF,
        "normalize": "utterance_mvn",
        "encoder": "gated_e_branchformer",
        "encoder_conf": {**ENCODER_CONF, "num_blocks": 2},
        "decoder": "gated_transformer",
        "decoder_conf": {**DECODER_CONF, "num_blocks": 2},
        "model": "gated_espnet",
        "model_conf": dict(
            ctc_weight=0.3, lsm_weight=0.1, gate_conf=dict(hidden_size=16, context_dim=8), sparsity_conf=sparsity_conf
        ),
        "preprocessor": "s2t",
        "preprocessor_conf": dict(speech_length=None, time_apply_prob=1.0, text_prev_apply_prob=0.0),
        "optim": "adam",
        "batch_type": "unsorted",
        "num_workers": 0,
        "seed": 0,
        **training,
    }


def random_sentence(rng: random.Random, n: int = 5) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="session")
def vocab(tmp_path_factory):
    """A real sentencepiece model and ESPnet token list in the OWSM layout."""
    d = tmp_path_factory.mktemp("vocab")
    rng = random.Random(0)
    (d / "text").write_text("\n".join(random_sentence(rng) for _ in range(400)) + "\n")
    bpe, tokens = train_bpe(d / "text", d / "bpe", 60, prefix_symbols(LANGS, TASKS))
    return {"bpemodel": bpe, "token_list": tokens, "tokens": tokens.read_text().split("\n")[:-1]}


def model_args(token_list: Path, dense: bool = False, **overrides):
    """ESPnet S2T training args for a tiny model (the parser's defaults otherwise)."""
    args = GatedS2TTask.get_parser().parse_args([])
    args.token_list = str(token_list)
    args.input_size = None
    args.frontend, args.frontend_conf = "default", dict(FRONTEND_CONF)
    args.normalize, args.normalize_conf = "utterance_mvn", {}
    args.specaug = None
    args.encoder = "e_branchformer" if dense else "gated_e_branchformer"
    args.decoder = "transformer" if dense else "gated_transformer"
    args.model = "espnet" if dense else "gated_espnet"
    args.encoder_conf = copy.deepcopy(ENCODER_CONF)
    args.decoder_conf = copy.deepcopy(DECODER_CONF)
    args.model_conf = dict(ctc_weight=0.3, lsm_weight=0.1)
    args.ctc_conf = {}
    args.init = None
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def build(token_list: Path, dense: bool = False, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return GatedS2TTask.build_model(model_args(token_list, dense=dense, **overrides))


@pytest.fixture
def dense_and_gated(vocab):
    """(dense, gated) in eval mode; the gated one holds the dense one's weights."""
    dense = build(vocab["token_list"], dense=True).eval()
    gated = build(vocab["token_list"], seed=1).eval()
    gated.load_state_dict(dense.state_dict(), strict=False)
    return dense, gated


def speech_batch(lengths, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    speech = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        speech[i, :n] = torch.randn(n, generator=g) * 0.1
    return speech, torch.tensor(lengths)


def context_ids(model, pairs):
    """(B, 2) ids for [("deu", "asr"), ...]."""
    tl = model.token_list
    return torch.tensor([[tl.index(f"<{lang}>"), tl.index(f"<{task}>")] for lang, task in pairs])


def data_path_args(data: Path, splits=("train", "valid"), shape_files: bool = False) -> list:
    """ESPnet's --<split>_data_path_and_name_and_type options for a data dir made by write_data_dir;
    with ``shape_files``, wav.scp as each split's shape file too (unsorted batches read only the keys)."""
    args = []
    for split in splits:
        for name, dtype, f in (
            ("speech", "sound", "wav.scp"),
            ("text", "text", "text"),
            ("text_prev", "text", "text.prev"),
            ("text_ctc", "text", "text.ctc"),
        ):
            args += [f"--{split}_data_path_and_name_and_type", f"{data / f},{name},{dtype}"]
        if shape_files:
            args += [f"--{split}_shape_file", str(data / "wav.scp")]
    return args
