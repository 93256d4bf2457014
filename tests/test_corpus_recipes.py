"""The per-corpus recipes (egs2/<corpus>/s2t1): local/data.sh imports the corpus miniatures, a missing
corpus root is named with what to do, and run.sh documents its options."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from corpus_miniatures import make_covost2, make_europarl_st, make_fleurs, make_must_c

from espnet_gated.datadir import read_data_dir

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
    for conf in ("train.yaml", "decode.yaml", "sweep.yaml"):
        assert (REPO / "egs2" / corpus / "s2t1/conf" / conf).is_file()
