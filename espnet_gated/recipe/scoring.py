"""Quality scores of decoded test sets: WER/CER for ASR (jiwer), BLEU and chrF for ST (sacrebleu).

Conventions (what users compare against): ASR hypotheses and references get the same
normalization (:func:`normalize`), and languages without word boundaries are scored by
CER; ST is scored on detokenized, cased text with sacrebleu's corpus BLEU (tokenizer 13a,
``zh``/``ja-mecab`` for Chinese/Japanese targets) and its signature, plus chrF. Every
test set holds one language and one task; micro averages pool the utterances of all sets
of a task, macro averages are the mean of the sets' values. Values are percentages.

Changes between two systems decoded on the same set (the gated model against the reference) get a
paired bootstrap confidence interval over the utterances (:func:`paired_bootstrap`): sacrebleu's own
resampling (``sacrebleu.significance``, the resamples of its paired bootstrap test), for BLEU on its
n-gram statistics and for WER/CER, on the same resampled utterances, on jiwer's per-utterance counts.

A hypothesis file that lacks utterances of the reference scores them as empty
hypotheses (with a warning naming how many and the first ids), so a partly failed
decode shows up as errors instead of a better score on fewer utterances. A hypothesis
for an utterance the reference does not have is an error: the two do not belong together.
"""

import logging
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import jiwer
import numpy as np
from sacrebleu import significance
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Score

from espnet_gated.configs import load_yaml
from espnet_gated.data.symbols import PREFIX
from espnet_gated.utils import PathLike, read_kaldi_map

try:
    from espnet_gated.data.langs import CER_LANGS
except ImportError:  # espnet_gated.data.langs is not there yet; same default
    CER_LANGS = frozenset({"zho", "jpn", "tha"})

NORMALIZERS = ("basic", "cer")
BLEU_TOKENIZERS = {"zho": "zh", "jpn": "ja-mecab"}
SCORE_KEYS = ("test_set", "lang", "task", "metric", "value", "n_utts")
LOWER_IS_BETTER = ("wer", "cer")
#: how many missing utterance ids a warning names
SHOW_IDS = 5
#: the metrics that get a confidence interval: each set's main one (as in the comparison with the reference)
BOOTSTRAP_METRICS = ("wer", "cer", "bleu")
#: resamples of the paired bootstrap (sacrebleu's default for its paired test)
BOOTSTRAP_SAMPLES = 1000


def normalize(text: str) -> str:
    """NFKC (composed and decomposed accents compare equal), lower-case, each Unicode
    punctuation character (category P*) replaced by a space, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


def normalize_chars(text: str) -> str:
    """:func:`normalize` without spaces: the units of CER."""
    return "".join(normalize(text).split())


def target_lang(lang: str, task: str) -> str:
    """Language of the text the model writes: the spoken one for ASR, ``xxx`` for ``st_xxx``."""
    return lang if task == "asr" else task.removeprefix("st_")


def load_normalizers(path: PathLike) -> Dict[str, str]:
    """``languages: [{code: deu, normalizer: basic}, ...]`` of a corpus YAML -> {code: normalizer}."""
    config = load_yaml(path)
    out = {}
    for entry in config.get("languages") or []:
        code, name = entry.get("code"), entry.get("normalizer")
        if name is None:
            continue
        if name not in NORMALIZERS:
            raise ValueError(f"{path}: language '{code}' has normalizer '{name}'; known: {list(NORMALIZERS)}")
        out[code] = name
    return out


def asr_metric(lang: str, normalizers: Mapping[str, str]) -> str:
    """``cer`` or ``wer``: the configured normalizer, else CER for :data:`CER_LANGS`."""
    default = "cer" if lang in CER_LANGS else "basic"
    return "cer" if normalizers.get(lang, default) == "cer" else "wer"


def metrics_for(lang: str, task: str, normalizers: Mapping[str, str]) -> Tuple[str, ...]:
    return (asr_metric(lang, normalizers),) if task == "asr" else ("bleu", "chrf")


def bleu_scorer(target: str) -> BLEU:
    """sacrebleu's BLEU with the tokenizer for ``target``; ``char`` with a warning when
    MeCab (``pip install sacrebleu[ja]``) is missing, which the signature then records."""
    tokenize = BLEU_TOKENIZERS.get(target, "13a")
    try:
        return BLEU(tokenize=tokenize)
    except RuntimeError as e:
        reason = " ".join(str(e).split())
        logging.warning(f"BLEU tokenizer '{tokenize}' for '{target}' is unavailable ({reason}); using 'char'")
        return BLEU(tokenize="char")


@dataclass
class TestSet:
    """A reference test set: one language and one task; ``refs`` are the target texts
    without the ``<lang><task><notimestamps>`` prefix, by utterance id in sorted order."""

    name: str
    lang: str
    task: str
    refs: Dict[str, str]
    num_samples: Dict[str, int] = field(default_factory=dict)


def _lookup(table: Dict[str, str], utt: str, path: Path) -> str:
    if utt not in table:
        raise ValueError(f"{path}: no entry for utterance '{utt}'")
    return table[utt]


def read_test_set(ref_root: PathLike, name: str) -> TestSet:
    """Read ``<ref_root>/<name>/{text,utt2lang,utt2task,utt2num_samples}`` and check they agree."""
    set_dir = Path(ref_root) / name
    text_path = set_dir / "text"
    if not text_path.is_file():
        raise FileNotFoundError(f"{text_path}: reference text of test set '{name}' not found")
    texts = read_kaldi_map(text_path)
    if not texts:
        raise ValueError(f"{text_path}: no utterances")
    langs = read_kaldi_map(set_dir / "utt2lang")
    tasks = read_kaldi_map(set_dir / "utt2task")
    samples_path = set_dir / "utt2num_samples"
    samples = read_kaldi_map(samples_path) if samples_path.is_file() else {}
    refs, num_samples, context = {}, {}, None
    for utt in sorted(texts):
        lang, task = _lookup(langs, utt, set_dir / "utt2lang"), _lookup(tasks, utt, set_dir / "utt2task")
        prefix = PREFIX.match(texts[utt])
        if prefix is None or prefix.groups() != (lang, task):
            raise ValueError(
                f"{text_path}: utterance '{utt}' does not start with <{lang}><{task}><notimestamps> "
                "(its utt2lang and utt2task)"
            )
        if context is None:
            context = (lang, task)
        elif context != (lang, task):
            raise ValueError(
                f"{set_dir}: utterance '{utt}' is {lang}/{task} but the set started with {context[0]}/{context[1]}; "
                "a test set holds one language and one task"
            )
        refs[utt] = texts[utt][prefix.end() :]
        if samples:
            value = _lookup(samples, utt, samples_path)
            if not value.isdigit():
                raise ValueError(f"{samples_path}: utterance '{utt}' has '{value}', not a sample count")
            num_samples[utt] = int(value)
    return TestSet(name, context[0], context[1], refs, num_samples)


def check_keys(path: PathLike, keys, refs: Mapping[str, str], what: str) -> List[str]:
    """Raise for a key of ``path`` that the reference lacks; return the reference ids ``path`` lacks
    (and warn about them, naming the first few)."""
    for utt in keys:
        if utt not in refs:
            raise ValueError(f"{path}: utterance '{utt}' is not in the reference test set")
    missing = [utt for utt in refs if utt not in keys]
    if missing:
        logging.warning(
            f"{path}: {len(missing)} of {len(refs)} utterances have no {what}: {' '.join(missing[:SHOW_IDS])}"
            + (" ..." if len(missing) > SHOW_IDS else "")
        )
    return missing


def read_hypotheses(path: PathLike, refs: Mapping[str, str]) -> Dict[str, str]:
    """Hypotheses for every reference utterance, in the reference's order; missing ones are ''."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: hypothesis file not found")
    hyps = read_kaldi_map(path)
    check_keys(path, hyps, refs, "hypothesis (scored as empty)")
    return {utt: hyps.get(utt, "") for utt in refs}


def _alignment(metric: str, refs: Sequence[str], hyps: Sequence[str]):
    if metric == "wer":
        return jiwer.process_words([normalize(r) for r in refs], [normalize(h) for h in hyps])
    return jiwer.process_characters([normalize_chars(r) for r in refs], [normalize_chars(h) for h in hyps])


def corpus_score(metric: str, refs: Sequence[str], hyps: Sequence[str], target: str) -> Tuple[float, Optional[str]]:
    """(value in %, sacrebleu signature or None) of one metric over a list of utterances."""
    if metric in LOWER_IS_BETTER:
        out = _alignment(metric, refs, hyps)
        return 100.0 * (out.wer if metric == "wer" else out.cer), None
    scorer = bleu_scorer(target) if metric == "bleu" else CHRF()
    return scorer.corpus_score(list(hyps), [list(refs)]).score, str(scorer.get_signature())


def main_metric(lang: str, task: str, normalizers: Mapping[str, str]) -> str:
    """The metric a set is compared by: WER/CER for ASR, BLEU for ST."""
    return asr_metric(lang, normalizers) if task == "asr" else "bleu"


def _error_counts(chunks) -> Dict[str, int]:
    counts = {"substitute": 0, "delete": 0, "insert": 0}
    for chunk in chunks:
        if chunk.type in counts:
            counts[chunk.type] += max(chunk.ref_end_idx - chunk.ref_start_idx, chunk.hyp_end_idx - chunk.hyp_start_idx)
    return counts


def asr_details(test_set: TestSet, hyps: Mapping[str, str], metric: str) -> str:
    """jiwer's alignment of every utterance under a grep-able header naming it and its errors."""
    utts = list(test_set.refs)
    out = _alignment(metric, [test_set.refs[u] for u in utts], [hyps[u] for u in utts])
    blocks = jiwer.visualize_alignment(out, show_measures=False, skip_correct=False).split("=== SENTENCE ")[1:]
    lines = []
    for utt, block, chunks, ref_units in zip(utts, blocks, out.alignments, out.references, strict=True):
        c = _error_counts(chunks)
        errors = c["substitute"] + c["delete"] + c["insert"]
        body = block.split("===", 1)[1].strip("\n")
        lines.append(
            f"=== {utt} {test_set.lang} {test_set.task} {metric} errors={errors} ref_len={len(ref_units)} "
            f"S={c['substitute']} D={c['delete']} I={c['insert']} ===\n{body}\n"
        )
    return "\n".join(lines)


def st_details(test_set: TestSet, hyps: Mapping[str, str]) -> str:
    """Reference, hypothesis and sentence chrF of every utterance (sentence BLEU is too noisy to rank by)."""
    chrf = CHRF()
    lines = []
    for utt, ref in test_set.refs.items():
        score = chrf.sentence_score(hyps[utt], [ref]).score
        lines.append(f"=== {utt} {test_set.lang} {test_set.task} chrf={score:.2f} ===\nREF: {ref}\nHYP: {hyps[utt]}\n")
    return "\n".join(lines)


# ---------------------------------------------------------------- paired bootstrap


def utterance_stats(metric: str, refs: Sequence[str], hyps: Sequence[str], target: str) -> List[List[int]]:
    """Per-utterance statistics whose sums give the corpus score: ``[errors, reference length]`` for
    WER/CER (jiwer's alignment, as :func:`corpus_score`), sacrebleu's n-gram statistics for BLEU."""
    if metric in LOWER_IS_BETTER:
        out = _alignment(metric, refs, hyps)
        pairs = zip(out.alignments, out.references, strict=True)
        return [[sum(_error_counts(chunks).values()), len(ref)] for chunks, ref in pairs]
    if metric != "bleu":
        raise ValueError(f"no bootstrap statistics for metric '{metric}'; known: {list(BOOTSTRAP_METRICS)}")
    return [list(map(int, row)) for row in bleu_scorer(target)._extract_corpus_statistics(list(hyps), [list(refs)])]


class ErrorRate:
    """WER or CER in % from summed ``[errors, reference length]``: the score of one resample, in the
    form sacrebleu's resampling computes a metric's score from summed statistics."""

    def __init__(self, name: str):
        self.name = name.upper()

    def _compute_score_from_stats(self, stats: Sequence[float]) -> Score:
        errors, length = stats
        return Score(self.name, 100.0 * errors / length)  # jiwer refuses empty references: length > 0


def bootstrap_seed() -> int:
    """The resampling seed: sacrebleu's (``SACREBLEU_SEED``, 12345 unless set). A paired test needs the
    same resamples for both systems, so an unseeded RNG (``SACREBLEU_SEED=none``) is refused."""
    value = os.environ.get("SACREBLEU_SEED", "12345")
    if not value.lstrip("-").isdigit():
        raise ValueError(f"SACREBLEU_SEED={value}: the paired bootstrap needs an integer seed (unset it for 12345)")
    return int(value)


def resampled_scores(metric: str, stats: Sequence[Sequence[int]], target: str, n_samples: int) -> np.ndarray:
    """The score of each of sacrebleu's ``n_samples`` bootstrap resamples of one system's utterances:
    sacrebleu's own resampling (``significance._bootstrap_resample``, which its paired bootstrap test
    uses), so two systems scored on the same set get the same resampled utterances."""
    bootstrap_seed()  # refuses an unseeded RNG
    scorer = ErrorRate(metric) if metric in LOWER_IS_BETTER else bleu_scorer(target)
    _, scores = significance._bootstrap_resample(stats, scorer, n_samples)
    return np.array([score.score for score in scores])


def interval(samples: np.ndarray) -> Tuple[float, float]:
    """The 95% percentile interval of bootstrap samples, with sacrebleu's bounds
    (``significance.estimate_ci``: the sorted samples' ``n // 40``-th from either end)."""
    ordered = np.sort(samples)
    cut = len(ordered) // 40
    return float(ordered[cut]), float(ordered[len(ordered) - cut - 1])


def paired_bootstrap(
    metric: str, target: str, reference: Sequence[Sequence[int]], system: Sequence[Sequence[int]], n_samples: int
) -> np.ndarray:
    """``system - reference`` in every resample of the utterances both were scored on
    (:func:`utterance_stats` of each, in the same utterance order)."""
    if len(reference) != len(system):
        raise ValueError(f"paired bootstrap: {len(reference)} utterances against {len(system)}")
    return resampled_scores(metric, system, target, n_samples) - resampled_scores(metric, reference, target, n_samples)


def mean_of_sets(changes: Sequence[np.ndarray]) -> np.ndarray:
    """Resamples of the mean change over sets (the task's macro average) from each set's resampled
    changes. Every set's utterances are resampled on their own: sacrebleu draws the same index rows for
    sets of one size, so set ``j`` contributes its resamples shifted by ``j`` (each row an independent draw)."""
    return np.mean([np.roll(change, -j) for j, change in enumerate(changes)], axis=0)


@dataclass
class ScoreReport:
    rows: List[Dict[str, Union[str, float, int]]]  # the scores.json rows
    signatures: Dict[str, Dict[str, str]]  # test set or average label -> metric -> sacrebleu signature
    details: Dict[str, str]  # test set -> detail text
    #: test set -> its main metric's per-utterance statistics (:func:`utterance_stats`) for the bootstrap:
    #: ``{"metric", "target", "utts", "stats"}``
    utterance_stats: Dict[str, Dict] = field(default_factory=dict)


def _row(test_set: str, lang: str, task: str, metric: str, value: float, n_utts: int) -> Dict:
    return dict(zip(SCORE_KEYS, (test_set, lang, task, metric, float(value), int(n_utts)), strict=True))


def score_sets(
    test_sets: Sequence[TestSet], hyps: Mapping[str, Mapping[str, str]], normalizers: Mapping[str, str]
) -> ScoreReport:
    """Score every set (``hyps`` by set name), then micro and macro averages per task and metric."""
    report = ScoreReport([], {}, {})
    pooled: Dict[Tuple[str, str], List[Tuple[TestSet, float]]] = {}
    for ts in test_sets:
        set_hyps = hyps[ts.name]
        for metric in metrics_for(ts.lang, ts.task, normalizers):
            value, signature = corpus_score(
                metric, list(ts.refs.values()), [set_hyps[u] for u in ts.refs], target_lang(ts.lang, ts.task)
            )
            report.rows.append(_row(ts.name, ts.lang, ts.task, metric, value, len(ts.refs)))
            if signature:
                report.signatures.setdefault(ts.name, {})[metric] = signature
            pooled.setdefault((ts.task, metric), []).append((ts, value))
        if ts.task == "asr":
            report.details[ts.name] = asr_details(ts, set_hyps, asr_metric(ts.lang, normalizers))
        else:
            report.details[ts.name] = st_details(ts, set_hyps)
        metric, target = main_metric(ts.lang, ts.task, normalizers), target_lang(ts.lang, ts.task)
        report.utterance_stats[ts.name] = {
            "metric": metric,
            "target": target,
            "utts": list(ts.refs),
            "stats": utterance_stats(metric, list(ts.refs.values()), [set_hyps[u] for u in ts.refs], target),
        }
    for (task, metric), members in sorted(pooled.items()):
        refs = [r for ts, _ in members for r in ts.refs.values()]
        pooled_hyps = [hyps[ts.name][u] for ts, _ in members for u in ts.refs]
        micro, signature = corpus_score(metric, refs, pooled_hyps, target_lang(members[0][0].lang, task))
        macro = sum(value for _, value in members) / len(members)
        n_utts = len(refs)
        report.rows.append(_row("micro_avg", "all", task, metric, micro, n_utts))
        report.rows.append(_row("macro_avg", "all", task, metric, macro, n_utts))
        if signature:
            report.signatures.setdefault(f"micro_avg {task}", {})[metric] = signature
    return report
