"""The recipe's scoring stage: one decode's results directory.

:func:`make_results` writes, under ``out``:

* ``scores.json``: rows with exactly :data:`~espnet_gated.recipe.scoring.SCORE_KEYS` (other tools read it);
* ``bleu_signatures.json``: sacrebleu signatures by test set (and pooled average);
* ``details/<test_set>.txt``: per utterance reference, hypothesis, errors (jiwer alignment) or chrF;
* ``usage.tsv`` and ``usage_<lang>_<task>.png``: keep rate of every module per language and task;
* ``summary.json``: sparsity, FLOPs relative to the dense model and decode time per utterance, overall and
  per test set (for the sweep and for the comparison below);
* ``utterance_stats.json``: per test set, the per-utterance statistics of its main metric (jiwer's error
  and reference word counts, sacrebleu's BLEU statistics), which a paired bootstrap against another
  decode of the same sets resamples;
* ``RESULTS.md``: all of it as tables. With a ``reference`` (the results directory of the model without
  pruning, decoded in the same jobs), it opens with the comparison in the form of the paper's Table 1:
  per test set and task the quality of both, the change with its paired bootstrap 95% interval, the
  executed MACs, the decode times and the speed-up, and whether the measured sparsity met the training
  config's targets (within :data:`TARGET_TOLERANCE`); summary.json holds it as ``comparison``. With the
  results of other seeds, it opens with every seed's rows and their mean and standard deviation
  (summary.json's ``seeds``).

Everything is computed before anything is written and every file is replaced atomically,
``scores.json`` last, so an error leaves the previous results as they were. The comparison with the
reference is :mod:`espnet_gated.recipe.comparison`'s; the sweep's report, :mod:`espnet_gated.recipe.sweep`.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_gated.method.layout import MODULES
from espnet_gated.recipe.comparison import (
    across_seeds,
    comparison,
    comparison_markdown,
    seed_comparisons,
    seeds_markdown,
    target_report,
)
from espnet_gated.recipe.results import UTTERANCE_STATS, fmt, markdown_table
from espnet_gated.recipe.scoring import (
    BOOTSTRAP_SAMPLES,
    ScoreReport,
    TestSet,
    check_keys,
    load_normalizers,
    read_hypotheses,
    read_test_set,
    score_sets,
)
from espnet_gated.recipe.usage import (
    ComputeCost,
    Mask,
    count_decoder_steps,
    keep_rate_rows,
    plot_usage,
    read_gates,
    sparsity,
    usage_grid,
    write_usage_tsv,
)
from espnet_gated.utils import PathLike, atomic_write, read_kaldi_map

TIMING_KEYS = ("n_utts", "wall_s", "encoder_s", "decoder_s")


Group = Tuple[str, str]  # (lang, task)


ALL: Group = ("all", "all")


COMPUTE_HEADER = (
    *("lang", "task", "utts", "enc frames", "dec steps", "GMACs", "dense GMACs"),
    *("rel. enc", "rel. dec", "rel. total"),
)


@dataclass
class DecodedSet:
    """A reference test set with what the decoder wrote for it."""

    ref: TestSet
    hyps: Dict[str, str]
    masks: Dict[str, Mask]  # only the utterances with a gates line
    steps: Dict[str, int]  # decoder steps per utterance (only when FLOPs are computed)
    timing: Optional[Dict[str, float]]
    best_dir: Path  # <decode_dir>/<set>/1best_recog, for messages


def read_timing(path: Path) -> Optional[Dict[str, float]]:
    if not path.is_file():
        return None
    try:
        timing = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in TIMING_KEYS if k not in timing]
    if missing:
        raise ValueError(f"{path}: missing {missing}; expected keys {list(TIMING_KEYS)}")
    return {k: timing[k] for k in TIMING_KEYS}


def read_decoded_set(ref_root: PathLike, decode_dir: PathLike, name: str, need_steps: bool) -> DecodedSet:
    """Read and cross-check one set; missing hypotheses, gates or tokens of some utterances are
    warned about (empty hypothesis, dense compute, one decoder step), foreign utterances are errors."""
    ref = read_test_set(ref_root, name)
    best = Path(decode_dir) / name / "1best_recog"
    hyps = read_hypotheses(best / "text_nospecial", ref.refs)
    masks: Dict[str, Mask] = {}
    gates_path = best / "gates"
    if gates_path.is_file():
        masks = read_gates(gates_path)
        check_keys(gates_path, masks, ref.refs, "gate mask (computed as dense)")
    else:
        logging.warning(f"{gates_path}: not found; no module usage for '{name}', its compute counted as dense")
    steps: Dict[str, int] = {}
    if need_steps:
        token_path = best / "token"
        if not token_path.is_file():
            raise FileNotFoundError(f"{token_path}: not found; the decoder FLOPs need the hypothesis lengths")
        if not ref.num_samples:
            raise FileNotFoundError(f"{Path(ref_root) / name / 'utt2num_samples'}: not found; the FLOPs need it")
        tokens = read_kaldi_map(token_path)
        check_keys(token_path, tokens, ref.refs, "tokens (one decoder step assumed)")
        steps = {utt: count_decoder_steps(tokens.get(utt, "")) for utt in ref.refs}
    return DecodedSet(ref, hyps, masks, steps, read_timing(Path(decode_dir) / name / "timing.json"), best)


def _groups(sets: Sequence[DecodedSet]) -> Dict[Group, List[DecodedSet]]:
    groups: Dict[Group, List[DecodedSet]] = {}
    for s in sets:
        groups.setdefault((s.ref.lang, s.ref.task), []).append(s)
    return groups


def set_macs(s: DecodedSet, cost: ComputeCost, beam_size: int) -> Dict[str, float]:
    """Summed MACs (executed and dense), frames, steps and utterances of one decoded set."""
    totals: Dict[str, float] = {}
    gates_path = s.best_dir / "gates"
    for utt, n_samples in s.ref.num_samples.items():
        mask = s.masks.get(utt)
        if mask is not None:
            cost.check(mask, f"{gates_path}: utterance '{utt}'")
        macs = cost.utterance_macs(n_samples, s.steps[utt], mask, beam_size)
        macs.update(n_utts=1, frames=cost.encoder_frames(n_samples), steps=s.steps[utt])
        for key, value in macs.items():
            totals[key] = totals.get(key, 0.0) + value
    return totals


def compute_stats(per_set: Mapping[str, Dict[str, float]], sets: Sequence[DecodedSet]) -> Dict[Group, Dict[str, float]]:
    """The sets' MACs (:func:`set_macs`) summed per (lang, task), plus the :data:`ALL` total."""
    totals: Dict[Group, Dict[str, float]] = {}
    for s in sets:
        for group in ((s.ref.lang, s.ref.task), ALL):
            acc = totals.setdefault(group, dict.fromkeys(per_set[s.ref.name], 0.0))
            for key, value in per_set[s.ref.name].items():
                acc[key] += value
    return totals


def _relative(stats: Mapping[str, float]) -> Dict[str, float]:
    return {
        "enc": stats["enc"] / stats["enc_dense"],
        "dec": stats["dec"] / stats["dec_dense"],
        "total": (stats["enc"] + stats["dec"]) / (stats["enc_dense"] + stats["dec_dense"]),
    }


def _per_utt_timing(sets: Sequence[DecodedSet]) -> Optional[Dict[str, float]]:
    """Seconds per utterance over all sets; None unless every set has a timing (runs must be comparable)."""
    if not sets or any(s.timing is None for s in sets):
        return None
    n = sum(s.timing["n_utts"] for s in sets)
    if n == 0:
        return None
    return {k: sum(s.timing[k] for s in sets) / n for k in ("wall_s", "encoder_s", "decoder_s")}


def _set_summary(s: DecodedSet, macs: Optional[Dict[str, float]]) -> Dict[str, object]:
    masks = list(s.masks.values())
    timing = _per_utt_timing([s])
    return {
        "lang": s.ref.lang,
        "task": s.ref.task,
        "n_utts": len(s.ref.refs),
        "enc_sparsity": sparsity(masks, "enc"),
        "dec_sparsity": sparsity(masks, "dec"),
        "distinct_masks": len({json.dumps(m, sort_keys=True) for m in masks}),
        "relative_flops": _relative(macs)["total"] if macs else None,
        "macs": macs and macs["enc"] + macs["dec"],
        "dense_macs": macs and macs["enc_dense"] + macs["dec_dense"],
        "decode_s_per_utt": timing and timing["wall_s"],
    }


def summarize(
    sets: Sequence[DecodedSet],
    compute: Optional[Dict[Group, Dict[str, float]]],
    per_set_macs: Mapping[str, Dict[str, float]],
    cost: Optional[ComputeCost],
    beam_size: int,
) -> Dict[str, object]:
    """The machine-readable summary.json that the sweep report and the comparison read."""
    masks = [m for s in sets for m in s.masks.values()]
    timing = _per_utt_timing(sets)
    relative = _relative(compute[ALL]) if compute else None
    summary = {
        "test_sets": [s.ref.name for s in sets],
        "n_utts": sum(len(s.ref.refs) for s in sets),
        "n_utts_with_gates": len(masks),
        "beam_size": beam_size,
        "enc_sparsity": sparsity(masks, "enc"),
        "dec_sparsity": sparsity(masks, "dec"),
        "relative_flops": relative and relative["total"],
        "relative_enc_flops": relative and relative["enc"],
        "relative_dec_flops": relative and relative["dec"],
        "decode_s_per_utt": timing and timing["wall_s"],
        "encoder_s_per_utt": timing and timing["encoder_s"],
        "decoder_s_per_utt": timing and timing["decoder_s"],
        "per_set": {s.ref.name: _set_summary(s, per_set_macs.get(s.ref.name)) for s in sets},
    }
    if cost is not None and masks:
        budgets = {tuple(m["budget"]) for m in masks if "budget" in m}
        if len(budgets) > 1:
            raise ValueError(f"the gates of one decode hold several sparsity budgets: {sorted(budgets)}")
        budget = next(iter(budgets), None)
        if budget is not None:
            summary["budget"] = list(budget)
        summary["targets"] = cost.targets_at(budget)
        summary["gated_sparsity"] = {side: cost.gated_sparsity(masks, side) for side in ("enc", "dec")}
        by_task: Dict[str, List] = {}
        for s in sets:
            by_task.setdefault(s.ref.task, []).extend(s.masks.values())
        summary["gated_sparsity_per_task"] = {
            task: {side: cost.gated_sparsity(task_masks, side) for side in ("enc", "dec")}
            for task, task_masks in by_task.items()
        }
    return summary


def _compute_row(group: Group, stats: Mapping[str, float]) -> List[object]:
    n, rel = stats["n_utts"], _relative(stats)
    lengths = (stats["frames"] / n, stats["steps"] / n)
    gmacs = ((stats["enc"] + stats["dec"]) / n / 1e9, (stats["enc_dense"] + stats["dec_dense"]) / n / 1e9)
    return [*group, int(n), *(f"{v:.1f}" for v in lengths), *(f"{v:.4g}" for v in gmacs), *map(fmt, rel.values())]


def usage_image_name(lang: str, task: str) -> str:
    return f"usage_{lang}_{task}.png"


def results_markdown(
    sets: Sequence[DecodedSet],
    scores: ScoreReport,
    usage: Mapping[Group, List[Dict]],
    compute: Optional[Dict[Group, Dict[str, float]]],
    summary: Mapping[str, object],
    header: str,
    comparison: str = "",
) -> str:
    parts = [f"# Results\n\n{header}\n"]
    if comparison:
        parts.append(comparison)
    parts.append("## Scores\n")
    parts.append(
        "Percentages. WER/CER after lower-casing, removing punctuation and collapsing spaces on both sides; "
        "BLEU and chrF (sacrebleu) on cased, detokenized text. "
        "micro_avg pools the utterances of a task's sets, macro_avg is the mean over the sets.\n"
    )
    rows = [(r["test_set"], r["lang"], r["task"], r["metric"], f"{r['value']:.2f}", r["n_utts"]) for r in scores.rows]
    parts.append(markdown_table(("test set", "lang", "task", "metric", "value", "utts"), rows))
    if scores.signatures:
        parts.append("sacrebleu signatures:\n")
        for label, by_metric in scores.signatures.items():
            parts += [f"- {label} {metric}: `{sig}`" for metric, sig in by_metric.items()]
        parts.append("")

    parts.append("## Module usage\n")
    parts.append(
        f"Keep rate of each module (1 = executed for every utterance). Skipped modules overall: "
        f"encoder {fmt(summary['enc_sparsity'])}, decoder {fmt(summary['dec_sparsity'])} "
        f"({summary['n_utts_with_gates']} of {summary['n_utts']} utterances have gates).\n"
    )
    distinct = {}
    for s in sets:
        group = distinct.setdefault((s.ref.lang, s.ref.task), [])
        group.extend(json.dumps(m, sort_keys=True) for m in s.masks.values())
    for (lang, task), rows in usage.items():
        masks = distinct.get((lang, task), [])
        top = max(masks.count(m) for m in set(masks)) if masks else 0
        parts.append(
            f"### {lang} {task} ({rows[0]['n_utts']} utts, {len(set(masks))} distinct masks; "
            f"the most frequent one: {top} utts)\n"
        )
        parts.append(f"![{lang} {task} module usage]({usage_image_name(lang, task)})\n")
        for side, title in (("enc", "Encoder"), ("dec", "Decoder")):
            grid = usage_grid(rows, side)
            table_rows = [(layer, *(f"{v:.2f}" for v in values)) for layer, values in enumerate(grid)]
            parts.append(f"{title}:\n\n" + markdown_table(("layer", *MODULES[side]), table_rows))

    if compute:
        parts.append(
            f"## Compute\n\nAnalytic MACs per utterance (flops.py), beam {summary['beam_size']}: executed "
            "modules against the same model with all modules open.\n"
        )
        ordered = [g for g in compute if g != ALL] + [ALL]  # the overall row last
        parts.append(markdown_table(COMPUTE_HEADER, [_compute_row(g, compute[g]) for g in ordered]))

    timed = [s for s in sets if s.timing is not None]
    if timed:
        parts.append("## Decode time\n\nSeconds per utterance (timing.json of the decode).\n")
        rows = []
        for s in timed:
            n = max(s.timing["n_utts"], 1)
            rows.append((s.ref.name, s.timing["n_utts"], *(fmt(s.timing[k] / n, 4) for k in TIMING_KEYS[1:])))
        parts.append(markdown_table(("test set", "utts", "wall s/utt", "encoder s/utt", "decoder s/utt"), rows))
    return "\n".join(parts)


def make_results(
    ref_root: PathLike,
    decode_dir: PathLike,
    test_sets: Sequence[str],
    out: PathLike,
    config: Optional[PathLike] = None,
    beam_size: int = 1,
    normalizers: Optional[PathLike] = None,
    reference: Optional[PathLike] = None,
    reference_label: str = "",
    seed_runs: Sequence[Tuple[str, PathLike]] = (),
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
    all_open: bool = False,
) -> Dict[str, object]:
    """Score ``test_sets`` and write the results directory ``out``; returns summary.json's content.

    ``config`` (the training config.yaml) enables the FLOPs columns and the check of the sparsity
    targets; ``normalizers`` is a corpus YAML whose ``languages`` entries may set ``normalizer:
    basic|cer``; ``reference`` is the results directory of the model without pruning (decoded in the
    same jobs), described by ``reference_label``, for the comparison that opens RESULTS.md, with
    ``bootstrap_samples`` paired bootstrap resamples. ``seed_runs`` ((seed, results dir), ``out``
    among them) are the same recipe trained with other seeds, each already compared with its own
    reference: RESULTS.md then opens with every seed's rows and the mean and spread over seeds.
    ``all_open``: the decode kept every module on request (``gate_mode: all_open``, as the recipe decodes its
    reference in the gated model's architecture), so the config's sparsity targets do not apply to it.
    """
    if not test_sets:
        raise ValueError("no test sets to score")
    cost = ComputeCost(config) if config else None
    norms = load_normalizers(normalizers) if normalizers else {}
    sets = [read_decoded_set(ref_root, decode_dir, name, need_steps=cost is not None) for name in test_sets]
    scores = score_sets([s.ref for s in sets], {s.ref.name: s.hyps for s in sets}, norms)
    usage = {
        group: keep_rate_rows(*group, [m for s in members for m in s.masks.values()])
        for group, members in _groups(sets).items()
        if any(s.masks for s in members)
    }
    per_set_macs = {s.ref.name: set_macs(s, cost, beam_size) for s in sets} if cost else {}
    compute = compute_stats(per_set_macs, sets) if cost else None
    summary = summarize(sets, compute, per_set_macs, cost, beam_size)
    if all_open:
        summary.pop("targets", None)
    header = (
        f"Decode: `{decode_dir}`; references: `{ref_root}`; model config: `{config or '-'}`; beam size {beam_size}."
    )
    comparison_md = ""
    if reference is not None:
        label = reference_label or str(reference)
        summary["comparison"] = comparison(
            scores.rows, summary, scores.utterance_stats, reference, label, bootstrap_samples
        )
        this_seed = ""
        if seed_runs:
            summary["seeds"] = across_seeds(seed_comparisons(seed_runs, out, summary["comparison"]))
            this_seed = next(seed for seed, d in seed_runs if Path(d).resolve() == Path(out).resolve())
            comparison_md = seeds_markdown(summary["seeds"], summary["comparison"]["bootstrap"]) + "\n"
        comparison_md += comparison_markdown(summary["comparison"], summary, this_seed)
    elif seed_runs:
        raise ValueError("seed_runs: the spread over seeds compares each seed with its reference: give the reference")
    markdown = results_markdown(sets, scores, usage, compute, summary, header, comparison_md)
    for miss in target_report(summary)[1]:
        logging.warning(f"{out}: {miss}: the sparsity knob did not do what it says (see the controller's log)")

    out = Path(out)
    for name, text in scores.details.items():
        atomic_write(out / "details" / f"{name}.txt", text)
    write_usage_tsv(out / "usage.tsv", [row for rows in usage.values() for row in rows])
    for (lang, task), rows in usage.items():
        plot_usage(rows, out / usage_image_name(lang, task), f"module keep rate: {lang} {task}")
    atomic_write(out / UTTERANCE_STATS, json.dumps(scores.utterance_stats, ensure_ascii=False) + "\n")
    atomic_write(out / "bleu_signatures.json", json.dumps(scores.signatures, indent=2, ensure_ascii=False) + "\n")
    atomic_write(out / "RESULTS.md", markdown)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write(out / "scores.json", json.dumps(scores.rows, indent=2, ensure_ascii=False) + "\n")
    return summary
