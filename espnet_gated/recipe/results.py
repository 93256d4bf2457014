"""A results directory (``exp/<tag>/results``): reading its files, and the markdown tables of its reports."""

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_gated.utils import PathLike

#: per-utterance statistics of each set's main metric, for the paired bootstrap against another decode
UTTERANCE_STATS = "utterance_stats.json"


QUALITY_METRICS = ("wer", "cer", "bleu")  # the quality columns of sweep.md (chrF stays in sweep.json)


def read_results(results_dir: PathLike) -> Tuple[List[Dict], Dict]:
    """(scores.json rows, summary.json) of a results directory written by :func:`make_results`."""
    results_dir = Path(results_dir)
    loaded = []
    for name in ("scores.json", "summary.json"):
        path = results_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; score that decode first")
        try:
            loaded.append(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if "per_set" not in loaded[1]:
        raise ValueError(f"{results_dir / 'summary.json'}: no per_set entry (written by an older version: score again)")
    return loaded[0], loaded[1]


def main_metric(rows: Sequence[Mapping], test_set: str, task: str) -> Optional[Tuple[str, float]]:
    values = {r["metric"]: r["value"] for r in rows if r["test_set"] == test_set and r["task"] == task}
    for metric in QUALITY_METRICS:
        if metric in values:
            return metric, values[metric]
    return None


def read_utterance_stats(results_dir: PathLike) -> Dict[str, Dict]:
    """``utterance_stats.json`` of a results directory: the bootstrap's per-utterance statistics."""
    path = Path(results_dir) / UTTERANCE_STATS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (written by an older version?): score that decode again")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
