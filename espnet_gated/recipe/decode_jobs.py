"""The recipe's decoding stage (``espnet_gated.bin.decode``): test sets split over jobs, several systems decoded in
the same jobs interleaved set by set, each job's shards marked done with what they were decoded with, merged in key
order."""

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List

from espnet_gated.cli import UsageError
from espnet_gated.configs import load_yaml
from espnet_gated.data.datadir import validate_data_dir
from espnet_gated.utils import atomic_write, read_kaldi_map

DONE = ".done"


#: what ``--system`` may set for another model decoded in the same jobs
BUDGET_REQUESTS = ("sparsity", "enc_sparsity", "dec_sparsity")
SYSTEM_KEYS = ("out_dir", "s2t_model_file", "s2t_train_config", "gate_mode", *BUDGET_REQUESTS)


PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _context(set_dir: Path):
    langs = set(read_kaldi_map(set_dir / "utt2lang").values())
    tasks = set(read_kaldi_map(set_dir / "utt2task").values())
    if len(langs) != 1 or len(tasks) != 1:
        raise ValueError(
            f"{set_dir}: a test set must hold one language and one task, found {sorted(langs)} x {sorted(tasks)} "
            "(split it with espnet_gated.bin.subset_data --split_by_context true)"
        )
    return langs.pop(), tasks.pop()


def check_inputs(train_config: str, model_file: str, data_root: str, sets: List[str]) -> None:
    """Raise ValueError naming the file if the model, its token list or a test set is unusable."""
    from espnet_gated.plugin.tasks import check_model_file, read_token_list

    check_model_file(train_config, model_file)
    tokens = set(read_token_list(load_yaml(train_config)["token_list"]))
    for name in sets:
        set_dir = Path(data_root) / name
        validate_data_dir(set_dir)
        lang, task = _context(set_dir)
        missing = [t for t in (f"<{lang}>", f"<{task}>") if t not in tokens]
        if missing:
            raise ValueError(f"{set_dir}: the model's token list ({train_config}) has no {' '.join(missing)}")


def is_translation(task: str) -> bool:
    return task.startswith("st_")


def options_for_task(options: Dict, task: str) -> Dict:
    """The decoding options of one task: translation takes ``st_ctc_weight`` as its CTC weight
    (the CTC learns the source transcript, ``text.ctc``; it cannot score a translation)."""
    if is_translation(task):
        return {**options, "ctc_weight": options["st_ctc_weight"]}
    return options


def decoded_with(options: Dict, wav_scp: Path) -> str:
    """What a shard's outputs depend on (its done marker holds it): the decoding options, the
    model file's size and time, and the set's wav.scp."""
    model = Path(options["s2t_model_file"]).stat()
    return json.dumps(
        {
            "options": options,
            "model": [model.st_size, model.st_mtime_ns],
            "wav.scp": hashlib.md5(wav_scp.read_bytes()).hexdigest(),
        },
        sort_keys=True,
    )


def _shard_dir(out_dir: Path, name: str, nj: int, job: int) -> Path:
    return out_dir / name / f"split{nj}" / str(job)


def _log_job(out_dir: Path, job: int, nj: int) -> None:
    """Everything, ESPnet's per-hypothesis beam search lines included, to ``<out_dir>/logs/decode.<job>.log``;
    on the console only this package's lines (progress with rate and ETA) and warnings."""
    log_file = out_dir / "logs" / f"decode.{job + 1}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file, to_console = logging.FileHandler(log_file), logging.StreamHandler()
    to_console.addFilter(lambda record: record.levelno >= logging.WARNING or record.pathname.startswith(PACKAGE_DIR))
    for handler in (to_file, to_console):
        handler.setFormatter(logging.Formatter(f"%(asctime)s (job {job + 1}/{nj}) %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[to_file, to_console], force=True)
    logging.info(f"ESPnet's decoding log: {log_file}")


def parse_system(text: str, main: Dict) -> Dict:
    """``--system key=value,...`` -> that system's options: the main options with ``out_dir``
    (required), ``s2t_model_file``, ``s2t_train_config`` and ``gate_mode`` replaced. A sparsity budget is the
    system's own: the main system's is not inherited (a reference trained without budgets would refuse it)."""
    fields = dict(item.partition("=")[::2] for item in text.split(",") if item)
    unknown = sorted(set(fields) - set(SYSTEM_KEYS))
    if unknown or "out_dir" not in fields or any(not v for v in fields.values()):
        raise UsageError(
            f"--system {text}: want out_dir=DIR[,s2t_model_file=F][,s2t_train_config=F][,gate_mode=M][,sparsity=S]"
        )
    return {**{k: v for k, v in main.items() if k not in BUDGET_REQUESTS}, **fields}


def warm_up(speech2text, wav: str, lang: str, task: str) -> None:
    """Decode one utterance untimed after a model is built: the first call of a model pays one-time
    costs (allocator, lazy initialisation) that would otherwise count against whichever model
    decodes first. Skipped when the wav.scp entry is not a plain file."""
    if not Path(wav).is_file():
        return
    import soundfile

    speech, _ = soundfile.read(wav, dtype="float32")
    logging.disable(logging.INFO)  # its beam-search lines would read as a decoded utterance in the log
    try:
        speech2text(speech, lang_sym=f"<{lang}>", task_sym=f"<{task}>")
    finally:
        logging.disable(logging.NOTSET)


def run_job(job: int, nj: int, systems: List[Dict], data_root: str, sets: List[str], threads: int) -> None:
    """Decode shard ``job`` of every set with every system (runs in its own process when nj > 1)."""
    import torch

    from espnet_gated.decoding.nbest_files import build_speech2text, decode_to_dir

    torch.set_num_threads(threads)
    _log_job(Path(systems[0]["out_dir"]), job, nj)
    contexts = {name: _context(Path(data_root) / name) for name in sets}
    loaded = [(None, None)] * len(systems)  # per system: (options it was built with, Speech2Text)
    # sets decoded with the same options follow each other: each option set loads each model once;
    # the systems take turns first, so none is always timed right after a model load
    ordered = sorted(sets, key=lambda n: is_translation(contexts[n][1]))
    for index, name in enumerate(ordered):
        set_dir = Path(data_root) / name
        lang, task = contexts[name]
        wavs = read_kaldi_map(set_dir / "wav.scp")  # once per set, for every system
        keys = sorted(wavs)[job::nj]
        turns = range(len(systems)) if index % 2 == 0 else reversed(range(len(systems)))
        for s in turns:
            options = systems[s]
            shard = _shard_dir(Path(options["out_dir"]), name, nj, job)
            set_options = options_for_task({k: v for k, v in options.items() if k != "out_dir"}, task)
            fingerprint = decoded_with(set_options, set_dir / "wav.scp")
            if (shard / DONE).exists() and (shard / DONE).read_text() == fingerprint:
                continue
            (shard / DONE).unlink(missing_ok=True)
            shard.mkdir(parents=True, exist_ok=True)
            atomic_write(shard / "keys", "".join(f"{k}\n" for k in keys))
            if keys:
                built_with, speech2text = loaded[s]
                if set_options != built_with:
                    loaded[s] = (None, None)  # release the previous model first
                    speech2text = build_speech2text(set_options, lang, task)
                    loaded[s] = (set_options, speech2text)
                    warm_up(speech2text, wavs[keys[0]], lang, task)
                speech2text.lang_sym, speech2text.task_sym = f"<{lang}>", f"<{task}>"
                logging.info(
                    f"{name}: {len(keys)} utterances ({lang}, {task}, ctc_weight {set_options['ctc_weight']}) "
                    f"-> {options['out_dir']}"
                )
                timing = decode_to_dir(
                    speech2text,
                    str(set_dir / "wav.scp"),
                    str(shard),
                    str(shard / "keys"),
                    options.get("nbest", 1),
                    batch_size=options.get("batch_size", 1),
                )
            else:
                timing = {"n_utts": 0, "wall_s": 0.0, "encoder_s": 0.0, "decoder_s": 0.0}
            atomic_write(shard / "timing.json", json.dumps(timing))
            atomic_write(shard / DONE, fingerprint)


def unfinished_shards(out_dir: Path, sets: List[str], nj: int) -> List[Path]:
    return [
        _shard_dir(out_dir, name, nj, j)
        for name in sets
        for j in range(nj)
        if not (_shard_dir(out_dir, name, nj, j) / DONE).is_file()
    ]


def merge_shards(out_dir: Path, name: str, nj: int) -> None:
    """Concatenate the shards' result files in key order; sum their timings."""
    shards = [_shard_dir(out_dir, name, nj, j) for j in range(nj)]
    files = sorted({p.relative_to(s) for s in shards for p in s.glob("*best_recog/*")})
    for rel in files:
        entries = {}
        for s in shards:
            if (s / rel).exists():
                entries.update(read_kaldi_map(s / rel))
        atomic_write(out_dir / name / rel, "".join(f"{k} {v}\n" for k, v in sorted(entries.items())))
    timing = {"n_utts": 0, "wall_s": 0.0, "encoder_s": 0.0, "decoder_s": 0.0}
    for s in shards:
        for key, value in json.loads((s / "timing.json").read_text()).items():
            timing[key] += value
    atomic_write(out_dir / name / "timing.json", json.dumps(timing, indent=2))
