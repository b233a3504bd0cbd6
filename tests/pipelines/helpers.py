"""Shared by the end-to-end tests: a copy of the project with tiny sizes, and running its commands."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from eurus_prime.runs import manifests

ROOT = Path(__file__).resolve().parents[2]
KEDRO = str(Path(sys.executable).with_name("kedro"))
EURUS_PRIME = str(Path(sys.executable).with_name("eurus-prime"))

TINY_PARAMS = {
    "tinyworld": {"n_sft": 400, "n_train": 60, "n_val": 30, "n_test": 60, "seed": 1},
    "tokenizer": {"vocab_size": 320},
    "model": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
    },
    "sft": {"epochs": 1, "eval_every": 3, "batch_size": 32},
    "evaluation": {"max_new_tokens": 24},
    "prm_eval": {"prompts": 6, "samples": 2},
    "prime": {
        "prompts_per_step": 3,
        "oversample_factor": 1.0,
        "samples_per_prompt": 2,
        "max_response_length": 24,
        "filter_low": 0.0,
        "filter_high": 1.0,
        "generation_batch_size": 8,
        "prm_mini_batch": 4,
        "ppo_mini_batch": 4,
        "micro_batch": 4,
        "eval_max_items": 10,
    },
}


#: Tiny sizes for the worlds with step labels (their environments, conf/chains and conf/countdown):
#: TINY_PARAMS' model and batch, with room for their longer responses, and the oracle process reward.
STEP_WORLD_PARAMS = {
    "tokenizer": TINY_PARAMS["tokenizer"],
    "model": TINY_PARAMS["model"],
    "sft": {"epochs": 1, "eval_every": 5, "batch_size": 32},
    "evaluation": {"max_new_tokens": 64},
    "prime": {**TINY_PARAMS["prime"], "max_response_length": 64, "process_reward": "oracle"},
}


def overlay_env(project: Path, env: str, overrides: dict) -> None:
    """Merge ``overrides`` into the project's ``conf/<env>/parameters.yml``, block by block."""
    path = project / "conf" / env / "parameters.yml"
    merged = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(merged))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def make_project(tmp_path: Path) -> Path:
    """A copy of the project with its own data/ and mlflow.db, and tiny sizes in conf/local."""
    for name in ("conf", "src", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(
            src,
            tmp_path / name,
            **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")} if src.is_dir() else {}),
        )
    base = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())
    local = tmp_path / "conf/local"
    local.mkdir(exist_ok=True)
    (local / "parameters.yml").write_text(yaml.safe_dump({k: _merge(base[k], v) for k, v in TINY_PARAMS.items()}))
    return tmp_path


def run(cmd, cwd, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(project: Path) -> dict:
    """Every output of every stage's latest manifest: tables as frames (with the run-specific
    timestamp cut from ``policy_version``), checkpoints as hashes of weights and optimizer state."""
    out = {}
    root = project / "data/09_manifests"
    for stage_dir in sorted(root.glob("iter_*/*")):
        record = manifests.latest(stage_dir.parent.name, stage_dir.name, root)
        for name, prov in record["outputs"].items():
            if "path" not in prov:
                continue
            path = project / prov["path"]
            key = f"{stage_dir.parent.name}/{name}"
            if path.is_dir():
                out[key] = {f: _digest(path / f) for f in ("model.safetensors", "optimizer.pt") if (path / f).exists()}
            else:
                frame = pd.read_parquet(path)
                if "policy_version" in frame:
                    frame["policy_version"] = frame["policy_version"].str.split("@").str[0]
                out[key] = frame
    return out


def assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(actual[key], value, check_exact=True, obj=key)
        else:
            assert actual[key] == value, key


def assert_clean(project: Path) -> None:
    data = project / "data"
    assert manifests.leftovers(data) == []
    for pattern in (
        "05_rollouts/iter_*/*",
        "07_model_output/iter_*/*",
        "08_reporting/iter_*/*",
        "06_models/policy/iter_*",
        "06_models/prm/iter_*",
    ):
        for folder in data.glob(pattern):
            assert len(list(folder.iterdir())) == 1, f"{folder} has {sorted(p.name for p in folder.iterdir())}"


def assert_one_run_per_iteration(project: Path, iterations: int) -> None:
    """One finished MLflow campaign run with one finished child run per iteration, none RUNNING."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    campaigns = [r for r in runs if r.data.tags.get("eurus_prime.role") == "campaign"]
    assert len(campaigns) == 1 and campaigns[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == campaigns[0].info.run_id]
    assert sorted(r.data.tags["eurus_prime.iteration"] for r in children) == [str(i) for i in range(iterations)]
    assert all(r.info.status == "FINISHED" for r in children)
