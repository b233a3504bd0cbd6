"""End-to-end runs of the real pipelines through ``kedro run``, on copies of the project."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KEDRO = str(Path(sys.executable).with_name("kedro"))
EURUS_PRIME = str(Path(sys.executable).with_name("eurus-prime"))

TINY_PARAMS = {
    "tinyworld": {"n_sft": 400, "n_train": 60, "n_val": 30, "n_test": 60, "seed": 1},
    "tokenizer": {"vocab_size": 320},
    "model": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1, "intermediate_size": 64},
    "sft": {"epochs": 1, "eval_every": 3, "batch_size": 32},
    "evaluation": {"max_new_tokens": 24},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@pytest.fixture()
def project(tmp_path):
    """A copy of the project with its own data/ and mlflow.db, and tiny sizes in conf/local."""
    for name in ("conf", "src", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name,
            **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if src.is_dir() else {}))
    base = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())
    local = tmp_path / "conf/local"
    local.mkdir(exist_ok=True)
    (local / "parameters.yml").write_text(yaml.safe_dump({k: _merge(base[k], v) for k, v in TINY_PARAMS.items()}))
    return tmp_path


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _latest(folder: Path) -> Path:
    """Newest version of a versioned dataset folder."""
    return sorted(folder.iterdir())[-1] / folder.name


@pytest.mark.slow
def test_bootstrap_through_kedro_run_then_train_is_idempotent(project):
    _run([KEDRO, "run", "--pipelines=bootstrap"], project)
    sft = _latest(project / "data/06_models/sft_model")
    assert (sft / "config.json").exists() and (sft / "tokenizer.json").exists()
    report = pd.read_parquet(_latest(project / "data/08_reporting/sft_eval_report.parquet"))
    assert report.query("group == 'all'")["n"].item() == 60
    history = pd.read_parquet(_latest(project / "data/08_reporting/sft_history.parquet"))
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert (project / "mlflow.db").exists()

    # The main job finds the SFT model and only reports: no second bootstrap.
    out = _run([EURUS_PRIME, "train", "--project", str(project)], project).stdout
    assert "skipping the bootstrap" in out and "Held-out greedy pass@1" in out
    assert len(list((project / "data/06_models/sft_model").iterdir())) == 1

    # One stage reruns alone from its stored inputs and adds a version.
    _run([KEDRO, "run", "--pipelines=evaluation"], project)
    assert len(list((project / "data/08_reporting/sft_eval_report.parquet").iterdir())) == 2


def _eurus_rows(n: int) -> pd.DataFrame:
    from eurus_prime.prompting import build_messages, system_prompt

    rows = []
    for i in range(n):
        math = i % 3
        rows.append({
            "data_source": "numina_olympiads" if math else "taco",
            "prompt": build_messages(f"Question {i}: what is {i} + {i}?", "math" if math else "code",
                                     system_prompt("eurus2")),
            "ability": "math" if math else "code",
            "reward_model": {"style": "rule", "ground_truth": str(2 * i) if math else
                             '{"inputs": ["1\\n"], "outputs": ["2\\n"]}'},
            "extra_info": {"split": "train", "index": i},
        })
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_eurus7b_env_loads_a_local_parquet_in_the_eurus_schema(project):
    raw = project / "data/01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    _eurus_rows(3000).to_parquet(raw / "eurus2_rl_data.parquet")
    _run([KEDRO, "run", "--env", "eurus7b", "--pipelines=data_prep",
          "--params=data_prep.split.val_fraction=0.1,data_prep.split.test_fraction=0.1"], project)
    tables = {n: pd.read_parquet(_latest(project / f"data/02_primary/prompts_{n}.parquet"))
              for n in ("train", "val", "test")}
    assert sum(len(t) for t in tables.values()) == 3000
    assert 200 < len(tables["test"]) < 400
    assert tables["train"]["prompt"].iloc[0][0]["content"].startswith("\nWhen tackling complex reasoning")


@pytest.mark.slow
def test_a_bad_row_fails_the_run_naming_file_row_and_field(project):
    raw = project / "data/01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    rows = _eurus_rows(10)
    rows.at[7, "ability"] = "poetry"
    rows.to_parquet(raw / "eurus2_rl_data.parquet")
    proc = subprocess.run([KEDRO, "run", "--env", "eurus7b", "--pipelines=data_prep"], cwd=project,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    # Kedro's rich console wraps long lines at any character, so compare without whitespace.
    message = "".join((proc.stdout + proc.stderr).split())
    assert "eurus2_rl_data.parquet:row7,fieldability:mustbeoneof" in message
