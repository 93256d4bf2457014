"""The per-corpus recipes (egs2/<corpus>/s2t1): local/data.sh imports the corpus miniatures, a missing
corpus root is named with what to do, and run.sh documents its options."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from corpus_miniatures import make_covost2, make_europarl_st, make_fleurs, make_must_c
from sacrebleu.metrics import BLEU
from test_pretrained import make_owsm_dir
from test_scoring import write_decode_set, write_ref_set

from espnet_gated.bin import make_config, score, sweep_report
from espnet_gated.data.datadir import read_data_dir
from espnet_gated.sharing.init_from import build_gated, full_args, init_from

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    # corpus: (miniature maker, data.sh options for it, expected (lang, task) pairs, the root's env variable)
    "europarl_st": (
        make_europarl_st,
        ["--langs", "deu,fra"],
        {("deu", "asr"), ("deu", "st_eng"), ("fra", "asr"), ("fra", "st_eng")},
        "EUROPARL_ST_ROOT",
    ),
    "fleurs": (make_fleurs, ["--langs", "deu"], {("deu", "asr"), ("deu", "st_eng")}, "FLEURS_ROOT"),
    "covost2": (make_covost2, ["--langs", "fr"], {("fra", "asr"), ("fra", "st_eng")}, "COVOST2_ROOT"),
    "must_c": (make_must_c, [], {("eng", "asr"), ("eng", "st_deu")}, "MUSTC_ROOT"),
}


def data_sh(corpus: str, cwd: Path, *args, env_root=None):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    env.pop(RECIPES[corpus][3], None)
    if env_root:
        env[RECIPES[corpus][3]] = str(env_root)
    script = REPO / "egs2" / corpus / "s2t1/local/data.sh"
    return subprocess.run([str(script), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("corpus", sorted(RECIPES))
def test_missing_corpus_root_says_what_to_do(corpus, tmp_path):
    proc = data_sh(corpus, tmp_path, "--root", tmp_path / "nowhere")
    assert proc.returncode == 1 and not (tmp_path / "data").exists()
    assert str(tmp_path / "nowhere") in proc.stderr and "run.sh" in proc.stderr
    proc = data_sh(corpus, tmp_path, "--bogus", "1")
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["europarl_st"])  # the others run the same way (~10 s of imports each)
def test_data_sh_imports_the_miniature(corpus, tmp_path):
    make, options, pairs, _ = RECIPES[corpus]
    root = make(tmp_path / "corpus", tmp_path) if corpus in ("europarl_st", "covost2") else make(tmp_path / "corpus")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    proc = data_sh(corpus, recipe, *options, env_root=root)  # the root from the environment variable
    assert proc.returncode == 0, proc.stderr[-3000:]
    utts = read_data_dir(recipe / "data/train")
    assert {(u.lang, u.task) for u in utts} == pairs


@pytest.mark.parametrize("corpus", sorted(RECIPES))
def test_run_sh_help(corpus):
    proc = subprocess.run(
        ["bash", str(REPO / "egs2" / corpus / "s2t1/run.sh"), "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "--init_from [" in proc.stdout and "--sweep_sides [" in proc.stdout
    for conf in ("train.yaml", "decode.yaml", "sweep.yaml", "sweep_budget.yaml"):
        assert (REPO / "egs2" / corpus / "s2t1/conf" / conf).is_file()


@pytest.mark.parametrize("corpus", sorted(RECIPES))
def test_run_sh_readme_and_sweep_config_name_the_current_stage_17(corpus):
    recipe = REPO / "egs2" / corpus / "s2t1"
    for name in ("run.sh", "README.md", "conf/sweep.yaml"):
        text = (recipe / name).read_text()
        assert "--sweep_side " not in text and "_sweep_<side>" not in text, name  # the one-side sweep is gone
        assert "--sweep_sides" in text, name
    assert (recipe / "conf/sweep.yaml").read_text().startswith("# Stage 17:")
    assert "exp/<tag>_sweep/" in (recipe / "README.md").read_text()


@pytest.fixture(scope="module")
def owsm(tmp_path_factory):
    return make_owsm_dir(tmp_path_factory.mktemp("hub") / "owsm_v3.1_tiny")


@pytest.mark.parametrize("corpus", sorted(RECIPES))
def test_configs_build_the_gated_model_the_reference_and_every_sweep_run(corpus, owsm, tmp_path):
    """Stage 5 merges conf/train.yaml over the OWSM model's config and builds the gated model; stage 11
    makes the reference from it (make_config --dense), stage 17 each run (+ conf/sweep.yaml + targets)."""
    conf = REPO / "egs2" / corpus / "s2t1/conf"
    recipe = yaml.safe_load((conf / "train.yaml").read_text())
    sparsity, gates = recipe["model_conf"]["sparsity_conf"], recipe["model_conf"]["gate_conf"]
    assert sparsity["controller"] == "lagrangian" and sparsity["ramp_steps"] > 0
    assert not {"alpha", "squared_weight", "abs_weight"} & set(sparsity)  # the penalty controller's keys
    init = init_from(owsm, tmp_path / "init", train_config=conf / "train.yaml")["train_config"]

    make_config.main([str(init), "--dense", "--out", str(tmp_path / "reference.yaml")])
    reference = build_gated(full_args(tmp_path / "reference.yaml"), tmp_path / "reference.yaml")
    assert not hasattr(reference, "gate_predictor")
    for side, targets in {"enc": (0.3, None), "dec": (None, 0.7), "both": (0.5, 0.5)}.items():
        run = tmp_path / f"{side}.yaml"
        options = [
            f"--target={name}={value}" for name, value in zip(("enc", "dec"), targets, strict=True) if value is not None
        ]
        make_config.main([str(init), "--merge", str(conf / "sweep.yaml"), "--out", str(run), *options])
        model = build_gated(full_args(run), run)
        controller = model.sparsity_controller
        assert controller.controller == "lagrangian" and controller.ramp_steps == sparsity["ramp_steps"]
        assert controller.targets == {"enc": targets[0], "dec": targets[1]}
        assert model.gate_predictor.warmup_steps == gates["warmup_steps"]
        assert model.gate_predictor.tau_anneal_steps == gates["tau_anneal_steps"]
    # the budget model (stage 17: + conf/sweep_budget.yaml + --budget): twice a fixed run's epochs, the sandwich rule
    budget_run = tmp_path / "dec_budget.yaml"
    make_config.main([
        str(init), "--merge", str(conf / "sweep.yaml"), "--merge", str(conf / "sweep_budget.yaml"),
        "--budget", "dec=0,0.8", "--out", str(budget_run),
    ])  # fmt: skip
    model = build_gated(full_args(budget_run), budget_run)
    budget = model.sparsity_controller.budget
    assert (budget.low, budget.high, budget.sides, budget.top_share) == (0.0, 0.8, ("dec",), 0.5)
    assert yaml.safe_load(budget_run.read_text())["max_epoch"] == 2 * recipe["max_epoch"]


# ---------------------------------------------------------------- Europarl-ST: stage 17 and the paper table
TAG = "owsm_v3.1_medium_gated"  # run.sh's tag for --owsm medium
REFS = {  # test set: (lang, task, {utt: reference})
    "test_deu_asr": ("deu", "asr", {"u1": "hallo welt wie geht", "u2": "guten tag zusammen heute"}),
    "test_fra_asr": ("fra", "asr", {"u3": "bonjour tout le monde", "u4": "merci beaucoup mes amis"}),
    "test_deu_st_eng": ("deu", "st_eng", {"u5": "Hello world, how are you?", "u6": "Good day to you all."}),
}
#: run -> (hypotheses that differ from the references, gate mask of every utterance, decode seconds per set)
RUNS = {
    "reference": ({}, "enc=1111.1111 dec=111.111", dict.fromkeys(REFS, 2.0)),
    "enc0.5": (
        {"u2": "guten tag zusammen"},  # WER 1/8 and 0 -> asr average 6.25
        "enc=1010.0101 dec=111.111",
        {"test_deu_asr": 1.75, "test_fra_asr": 1.75, "test_deu_st_eng": 1.5},
    ),
    "dec0.5": (
        {"u1": "hallo welt wo geht", "u2": "guten tag", "u3": "bonjour le monde", "u6": "Good day to all."},
        "enc=1111.1111 dec=100.011",  # WER 3/8 and 1/8 -> asr average 25
        {"test_deu_asr": 1.5, "test_fra_asr": 1.5, "test_deu_st_eng": 1.25},
    ),
    "dec_budget@0.5": (  # the decoder's budget model asked for 0.5: decoded and scored in dec_budget/at0.5/
        {"u1": "hallo welt wo geht", "u3": "bonjour tout le"},  # WER 1/8 and 1/8 -> asr average 12.5
        "enc=1111.1111 dec=110.001",
        {"test_deu_asr": 1.6, "test_fra_asr": 1.6, "test_deu_st_eng": 1.0},
    ),
}
RUN_DIRS = {run: run.replace("@", "/at") for run in RUNS}  # where stage 17 decodes each run, under the sweep


def write_sweep(recipe: Path) -> Path:
    """exp/<tag>_sweep/ as stage 17 leaves it: each run's decode (1best_recog, gates, timing.json)
    scored by espnet_gated.bin.score against the test sets, then espnet_gated.bin.sweep_report."""
    ref_root, sweep = recipe / "dump/raw", recipe / f"exp/{TAG}_sweep"
    for name, (lang, task, refs) in REFS.items():
        write_ref_set(ref_root, name, lang, task, refs)
    sets = " ".join(REFS)
    for run, (changed, mask, seconds) in RUNS.items():
        for name, (lang, task, refs) in REFS.items():
            hyps = {u: changed.get(u, r) for u, r in refs.items()}
            timing = {"n_utts": len(refs), "wall_s": seconds[name], "encoder_s": 0.0, "decoder_s": 0.0}
            gates = dict.fromkeys(refs, mask)
            decode = sweep / RUN_DIRS[run] / "decode"
            write_decode_set(decode, name, hyps, f"<{lang}> <{task}> <notimestamps>", gates, timing)
        reference = [] if run == "reference" else ["--reference", str(sweep / "reference/results")]
        score.main(
            ["--ref_root", str(ref_root), "--decode_dir", str(sweep / RUN_DIRS[run] / "decode"), "--test_sets", sets]
            + ["--out", str(sweep / RUN_DIRS[run] / "results"), *reference]
        )
    runs = [f"{run}={sweep / RUN_DIRS[run] / 'results'}" for run in RUNS]
    sweep_report.main(["--runs", *runs, "--out", str(sweep)])
    return sweep


@pytest.fixture(scope="module")
def europarl_copy(tmp_path_factory):
    """A copy of the Europarl-ST recipe whose engine only records its calls, with a stage-17 sweep."""
    root = tmp_path_factory.mktemp("egs")
    recipe = root / "egs2/europarl_st/s2t1"
    shutil.copytree(REPO / "egs2/europarl_st/s2t1", recipe, ignore=shutil.ignore_patterns("exp", "data", "dump"))
    engine = root / "egs2/TEMPLATE/s2t1/s2t.sh"
    engine.parent.mkdir(parents=True)
    engine.write_text('#!/usr/bin/env bash\nprintf "%q " "$@" >> engine_calls.txt\necho >> engine_calls.txt\n')
    engine.chmod(0o755)
    write_sweep(recipe)
    return recipe


def paper_table(*args) -> subprocess.CompletedProcess:
    script = REPO / "egs2/europarl_st/s2t1/local/paper_table.py"
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True)


def table_rows(markdown: str) -> dict:
    """{task: [cells of each row]} of the paper table."""
    tables, task = {}, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            task = line[3:]
        elif task and line.startswith("| ") and not line.startswith("| run |"):
            tables.setdefault(task, []).append([cell.strip() for cell in line.strip("|").split("|")])
    return tables


def test_paper_table_compares_every_run_with_the_reference_and_the_paper(europarl_copy, tmp_path):
    sweep = europarl_copy / f"exp/{TAG}_sweep"
    out = tmp_path / "paper.md"
    proc = paper_table("--sweep", sweep, "--paper", europarl_copy / "conf/paper_results.yaml", "--out", out)
    assert proc.returncode == 0, proc.stderr
    tables = table_rows(out.read_text())
    assert list(tables) == ["asr", "st_eng"]
    # run, target, enc and dec sparsity, ours, change vs the reference, s/utt, change, paper's change and time
    assert [row[:10] for row in tables["asr"]] == [
        ["reference", "dense", "0.00", "0.00", "WER 0.00", "-", "1.000", "-", "-", "-"],
        ["enc", "50%", "0.50", "0.00", "WER 6.25", "+6.25", "0.875", "-12.5%", "-", "-"],
        ["dec", "50%", "0.00", "0.50", "WER 25.00", "+25.00", "0.750", "-25.0%", "+2.8", "-28.6%"],
        ["dec budget model", "50%", "0.00", "0.50", "WER 12.50", "+12.50", "0.800", "-20.0%", "+2.8", "-28.6%"],
    ]
    refs = list(REFS["test_deu_st_eng"][2].values())
    hyps = [RUNS["dec0.5"][0].get(u, r) for u, r in REFS["test_deu_st_eng"][2].items()]
    bleu = BLEU().corpus_score(hyps, [refs]).score
    assert 0 < bleu < 100
    assert [row[:10] for row in tables["st_eng"]] == [
        ["reference", "dense", "0.00", "0.00", "BLEU 100.00", "-", "1.000", "-", "-", "-"],
        ["enc", "50%", "0.50", "0.00", "BLEU 100.00", "+0.00", "0.750", "-25.0%", "-", "-"],
        ["dec", "50%", "0.00", "0.50", f"BLEU {bleu:.2f}", f"{bleu - 100:+.2f}", "0.625", "-37.5%", "+0.0", "-34.3%"],
        ["dec budget model", "50%", "0.00", "0.50", "BLEU 100.00", "+0.00", "0.500", "-50.0%", "+0.0", "-34.3%"],
    ]
    results = (sweep / "dec0.5/results/RESULTS.md").resolve()
    assert tables["asr"][2][10] == f"[RESULTS]({results})" and results.is_file()
    budget_results = (sweep / "dec_budget/at0.5/results/RESULTS.md").resolve()
    assert tables["asr"][3][10] == f"[RESULTS]({budget_results})" and budget_results.is_file()


def test_paper_table_refuses_a_sweep_without_the_reference_and_keeps_its_output(tmp_path):
    paper = REPO / "egs2/europarl_st/s2t1/conf/paper_results.yaml"
    out = tmp_path / "paper.md"
    out.write_text("the previous table\n")
    (tmp_path / "sweep").mkdir()
    proc = paper_table("--sweep", tmp_path / "sweep", "--paper", paper, "--out", out)
    assert proc.returncode == 2 and f"{tmp_path / 'sweep' / 'sweep.json'}: not found; run stage 17" in proc.stderr
    (tmp_path / "sweep/sweep.json").write_text(json.dumps({"reference_run": "dec0.5", "runs": [{"run": "dec0.5"}]}))
    proc = paper_table("--sweep", tmp_path / "sweep", "--paper", paper, "--out", out)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "sweep.json: no run named 'reference'" in proc.stderr
    assert out.read_text() == "the previous table\n"


def test_europarl_run_sh_sweeps_every_side_in_one_stage_17_call_then_writes_the_table(europarl_copy):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", "run.sh", "--stage", "17", "--corpus_root", "/corpora/europarl-st"],
        cwd=europarl_copy, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = [shlex.split(line) for line in (europarl_copy / "engine_calls.txt").read_text().splitlines()]
    assert len(calls) == 1
    options = dict(zip(calls[0][::2], calls[0][1::2], strict=True))
    assert options["--stage"] == options["--stop_stage"] == "17" and options["--sweep_sides"] == "enc dec both"
    assert options["--tag"] == TAG and options["--sweep_config"] == "conf/sweep.yaml"
    assert options["--budget_config"] == "conf/sweep_budget.yaml"
    rows = table_rows((europarl_copy / f"exp/{TAG}_paper.md").read_text())
    assert [row[0] for row in rows["asr"]] == ["reference", "enc", "dec", "dec budget model"]
