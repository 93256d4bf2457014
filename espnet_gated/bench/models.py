"""The models the benchmark decodes, the utterances, and how a report names them.

One set of weights is built (``--size``, random init) or loaded (a trained gated model);
ESPnet's dense model (stock ``e_branchformer`` + ``transformer``, same dimensions, same
weights) is decoded with ESPnet's own ``Speech2Text``/``BatchBeamSearch``
(:class:`~espnet_gated.bench.instrumentation.TimedSpeech2Text`), the gated and exported
models with :class:`~espnet_gated.decoding.inference.GatedSpeech2Text`.
"""

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from espnet_gated.bench.instrumentation import TimedSpeech2Text, suppress_eos
from espnet_gated.bench.variants import side_masks
from espnet_gated.cli import UsageError
from espnet_gated.configs import dense_config, load_yaml
from espnet_gated.data.tokenizer import HEAD_SYMBOLS, TAIL_SYMBOLS, TIME_SYMBOLS
from espnet_gated.decoding.inference import GatedSpeech2Text
from espnet_gated.method.layout import format_mask, parse_mask
from espnet_gated.method.sparsity import BudgetRequestError
from espnet_gated.plugin.tasks import preprocessor_defaults
from espnet_gated.plugin.weights import GATING_STATE, check_weights, read_state_dict
from espnet_gated.sharing.export import export
from espnet_gated.sharing.model_dir import build_from_config, save_model_dir

logger = logging.getLogger("espnet_gated.bench")

#: backbone sizes: OWSM v3.1 base, small and medium (paper table), and a tiny one for smoke tests
SIZES = {
    "tiny": dict(d=64, layers=2, heads=2, ffn=128, vocab=200),
    "base": dict(d=384, layers=6, heads=6, ffn=1536, vocab=50000),
    "small": dict(d=768, layers=9, heads=12, ffn=3072, vocab=50000),
    "medium": dict(d=1024, layers=18, heads=16, ffn=4096, vocab=50000),
}
LANGS = ("eng", "deu", "fra", "ita")
TASKS = ("asr", "st_eng")

#: a model directory: (config.yaml, weights)
ModelFiles = Tuple[Path, Path]


def random_config(size: str, vocab_size: int, utt_sec: Optional[float]) -> Dict:
    """An OWSM v3.1-style gated config (E-Branchformer + Transformer) of the given size; input
    padded to ``utt_sec`` (as OWSM pads to 30 s), or not at all (None)."""
    s = SIZES[size]
    n_special = len(HEAD_SYMBOLS) + 1 + len(LANGS) + len(TASKS) + 1 + len(TIME_SYMBOLS) + len(TAIL_SYMBOLS)
    if vocab_size < n_special + 1:
        raise ValueError(f"--vocab_size must be at least {n_special + 1}")
    prefix = ["<na>", *[f"<{lang}>" for lang in LANGS], *[f"<{task}>" for task in TASKS], "<notimestamps>"]
    pieces = [f"\u2581w{i}" for i in range(vocab_size - n_special)]
    token_list = [*HEAD_SYMBOLS, *prefix, *TIME_SYMBOLS, *pieces, *TAIL_SYMBOLS]
    return dict(
        token_list=token_list,
        token_type="bpe",
        bpemodel=None,
        input_size=None,
        frontend="default",
        frontend_conf=dict(n_fft=512, win_length=400, hop_length=160, n_mels=80),
        specaug=None,
        normalize="utterance_mvn",
        normalize_conf={},
        encoder="gated_e_branchformer",
        encoder_conf=dict(
            output_size=s["d"],
            attention_heads=s["heads"],
            attention_layer_type="selfattn",
            pos_enc_layer_type="abs_pos",
            rel_pos_type="latest",
            cgmlp_linear_units=s["ffn"],
            cgmlp_conv_kernel=31,
            use_linear_after_conv=False,
            gate_activation="identity",
            num_blocks=s["layers"],
            dropout_rate=0.0,
            positional_dropout_rate=0.0,
            attention_dropout_rate=0.0,
            input_layer="conv2d",
            layer_drop_rate=0.0,
            linear_units=s["ffn"],
            positionwise_layer_type="linear",
            use_ffn=True,
            macaron_ffn=True,
            merge_conv_kernel=31,
        ),
        decoder="gated_transformer",
        decoder_conf=dict(
            attention_heads=s["heads"],
            linear_units=s["ffn"],
            num_blocks=s["layers"],
            dropout_rate=0.0,
            positional_dropout_rate=0.0,
            self_attention_dropout_rate=0.0,
            src_attention_dropout_rate=0.0,
        ),
        model="gated_espnet",
        model_conf=dict(ctc_weight=0.3, lsm_weight=0.1, sym_na="<na>", gate_conf=dict(hidden_size=256, context_dim=64)),
        ctc_conf={},
        preprocessor="s2t",
        preprocessor_conf={**preprocessor_defaults(), "speech_length": utt_sec, "time_apply_prob": 1.0},
        init=None,
    )


@dataclass
class Models:
    """The benchmark's model directories (``files``: dense, gated, and exported once written), the gated
    model's config and the model itself; ``trained``: loaded from ``--s2t_train_config``, else random."""

    config: Dict
    files: Dict[str, ModelFiles]
    gated: torch.nn.Module
    trained: bool

    @property
    def n_layers(self) -> Tuple[int, int]:
        """(encoder, decoder) layers of the gate layout."""
        n = self.gated.gate_layout.n_layers
        return n["enc"], n["dec"]


def prepare_models(args, out: Path) -> Models:
    """Write (or locate) the gated and dense model directories under ``out/models``."""
    if args.s2t_train_config:
        config = load_yaml(args.s2t_train_config)
        if config.get("model") != "gated_espnet":
            raise ValueError(f"{args.s2t_train_config}: --s2t_train_config must be a gated model (model: gated_espnet)")
        if not args.s2t_model_file or not Path(args.s2t_model_file).is_file():
            raise FileNotFoundError(f"--s2t_model_file not found: {args.s2t_model_file}")
        gated = build_from_config(config)
        check_weights(gated, args.s2t_model_file, args.s2t_train_config)  # loads them
        gated_files = (Path(args.s2t_train_config), Path(args.s2t_model_file))
        trained = True
    else:
        vocab = args.vocab_size or SIZES[args.size]["vocab"]
        logger.info(f"building a random {args.size}-sized gated model (vocabulary {vocab})")
        config = random_config(args.size, vocab, None if args.throughput else args.utt_sec)
        torch.manual_seed(args.seed)
        gated = build_from_config(config)
        gated_files = save_model_dir(out / "models" / "gated", config, gated.state_dict())
        trained = False
    state = {k: v for k, v in gated.state_dict().items() if not k.startswith(GATING_STATE)}
    dconf = dense_config(config)
    dense = build_from_config(dconf)
    result = dense.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"dense model keys differ from the gated model's: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    dense_files = save_model_dir(out / "models" / "dense", dconf, dense.state_dict())
    logger.info(f"dense ESPnet model with the same weights: {dense_files[0]}")
    return Models(config=config, files={"gated": gated_files, "dense": dense_files}, gated=gated, trained=trained)


def export_model(args, models: Models, lang: str, task: str, out: Path) -> Tuple[Dict, Tuple[torch.Tensor, ...]]:
    """Export the mask of ``--export_mask`` (``auto``: a trained context-only predictor's mask of the
    language and task, else ``both@0.5``) into ``out/models/exported``; returns export's summary (with
    the dense and gated sizes added) and the exported (enc, dec) masks."""
    spec, mask_text, lang_task = args.export_mask, None, None
    if spec == "auto" and models.trained and not models.gated.gate_predictor.use_audio:
        lang_task = (lang, task)
    else:
        spec = "both@0.5" if spec == "auto" else spec
        if "@" in spec:
            side, s = spec.split("@")
            mask_text = format_mask(*side_masks(side, float(s), *models.n_layers))
        else:
            mask_text = spec
    logger.info(f"exporting {lang_task or mask_text} to {out / 'models' / 'exported'}")
    gated_files, dense_files = models.files["gated"], models.files["dense"]
    info = export(
        gated_files[0],
        gated_files[1],
        out / "models" / "exported",
        mask=mask_text,
        lang_sym=lang_task[0] if lang_task else None,
        task_sym=lang_task[1] if lang_task else None,
    )
    parsed = parse_mask(info["mask"])
    masks = (torch.tensor(parsed["enc"], dtype=torch.float), torch.tensor(parsed["dec"], dtype=torch.float))
    models.files["exported"] = (Path(info["config"]), Path(info["model_file"]))
    dense_sd = read_state_dict(dense_files[1])
    info["params"]["dense"] = int(sum(v.numel() for v in dense_sd.values() if v.is_floating_point()))
    info["bytes"]["dense_model_file"] = Path(dense_files[1]).stat().st_size
    info["bytes"]["gated_model_file"] = Path(gated_files[1]).stat().st_size
    return info, masks


def build_decoders(args, files: Dict[str, ModelFiles], beam: int, ctc_weight: float, lang: str, task: str) -> Dict:
    """Per model (dense, gated, exported when written) its decoder, all with the same search settings."""
    kw = dict(
        beam_size=beam,
        ctc_weight=ctc_weight,
        maxlenratio=-float(args.decode_len) if args.decode_len > 0 else args.maxlenratio,
        minlenratio=0.0,
        lang_sym=lang,
        task_sym=task,
        device=args.device,
        nbest=1,
    )
    s2ts = {"dense": TimedSpeech2Text(str(files["dense"][0]), str(files["dense"][1]), **kw)}
    for kind in ("gated", "exported"):
        if kind in files:
            s2ts[kind] = GatedSpeech2Text(str(files[kind][0]), str(files[kind][1]), dtype=args.dtype, **kw)
    for budget in args.sparsity:  # refused before any timing
        try:
            s2ts["gated"].budget(sparsity=budget)
        except BudgetRequestError as e:
            raise UsageError(f"--sparsity {budget:g}: {e}") from None
    if args.decode_len > 0:
        for s2t in s2ts.values():
            suppress_eos(s2t.s2t_model)
    return s2ts


def sample_rate(config: Dict) -> int:
    """The model's sampling rate (its frontend's ``fs``; 16 kHz when unset or written as text)."""
    fs = (config.get("frontend_conf") or {}).get("fs", 16000)
    return 16000 if isinstance(fs, str) else int(fs)


def read_utterances(args, fs: int) -> List[np.ndarray]:
    """The first ``--n_utts`` of ``--wav_scp``, or ``--n_utts`` synthetic ones of ``--utt_sec`` (throughput
    mode: lengths spread over 0.5-1.5 x ``--utt_sec``, as in a real test set)."""
    if args.wav_scp:
        import soundfile

        from espnet_gated.utils import read_kaldi_map

        if not Path(args.wav_scp).is_file():
            raise FileNotFoundError(f"--wav_scp not found: {args.wav_scp}")
        utts = []
        for key, path in list(read_kaldi_map(args.wav_scp).items())[: args.n_utts]:
            try:
                audio, rate = soundfile.read(path, dtype="float32")
            except Exception as e:
                raise ValueError(f"{args.wav_scp}: cannot read '{path}' of utterance {key} ({e})") from e
            if rate != fs:
                raise ValueError(f"{args.wav_scp}: {path} has {rate} Hz, the model wants {fs} Hz")
            utts.append(audio if audio.ndim == 1 else audio[:, 0])
        if not utts:
            raise ValueError(f"{args.wav_scp} lists no utterances")
        return utts
    rng = np.random.default_rng(args.seed)
    utts = []
    for _ in range(args.n_utts):
        sec = args.utt_sec * (rng.uniform(0.5, 1.5) if args.throughput else 1.0)
        t = np.arange(int(round(sec * fs))) / fs
        wave = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(t.size)
        utts.append(wave.astype(np.float32))
    return utts


def symbols(args) -> Tuple[str, str]:
    """``--lang_sym`` and ``--task_sym`` as tokens (``deu`` or ``<deu>``: ``<deu>``)."""
    return f"<{args.lang_sym.strip('<>')}>", f"<{args.task_sym.strip('<>')}>"


def describe_model(args, trained: bool) -> str:
    if trained:
        return f"trained gated model {args.s2t_train_config}"
    dims = SIZES[args.size]
    return (
        f"random OWSM v3.1-{args.size}-sized weights (d={dims['d']}, {dims['layers']}+{dims['layers']} "
        f"layers, {dims['heads']} heads, ffn {dims['ffn']}, vocab {args.vocab_size or dims['vocab']})"
    )


def describe_device(device: str) -> str:
    return device if device != "cpu" else f"cpu ({platform.processor() or platform.machine()})"


def describe_length(args) -> str:
    if args.decode_len > 0:
        return f"fixed decode length {args.decode_len} tokens (<eos> suppressed)"
    return f"natural decode length (maxlenratio {args.maxlenratio})"
