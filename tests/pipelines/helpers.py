"""Shared by the end-to-end tests: a copy of the project with tiny sizes, and running its commands."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

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
