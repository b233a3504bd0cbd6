"""Side by side: seconds per eurus_prime PRIME iteration vs seconds per TRL outcome-only RL step.

    pip install -c constraints-cpu.txt -e ".[bench]"       # TRL (the `bench` extra)
    python benchmarks/trl_compare.py                       # ~6 minutes on 2 cores
    python benchmarks/trl_compare.py --trl-steps 2 --iterations 2          # a quick smoke run
    python benchmarks/trl_compare.py --accuracy-minutes 5  # + equal wall time, held-out accuracy

Both sides start from this checkout's SFT checkpoint (``data/06_models/sft_model``, the tokenizer of
``data/06_models/tokenizer``; run the bootstrap first), train on the same ``prompts_train`` rendered
with the same chat template (asserted token for token), sample ``samples_per_prompt`` responses per
prompt at the same temperature and length budget, grade them with eurus_prime's own verifiers
(``eurus_prime.verifiers.verify_all``, each distinct response once, as ``verify_outcomes`` does),
and take the same number of AdamW steps of the same size at the same learning rate. Every number
comes from ``conf/base/parameters.yml: prime`` (``PrimeConfig``); the md lists the field mapping.

- **TRL** (``GRPOTrainer`` by default, ``--trainer rloo`` for ``RLOOTrainer``) runs in a child
  process, its outputs in a temporary folder. One *RL step* is one generation batch (B prompts x n
  samples) and the ``steps_per_generation`` optimizer steps over it. A ``TrainerCallback`` stamps
  every optimizer step (``on_step_end``); step 0 is warm-up and excluded from the mean. The
  generation, reward and scoring methods are wrapped to split a step into phases.
- **eurus_prime**: ``eurus-prime train --iterations K`` on fresh copies of the project
  (``_project.fresh_project``), at the defaults, and with a matched generation budget
  (``prime.oversample_factor=1.0``, ``prime.filter_mode=fixed_batch``: B prompts drawn, all B
  groups trained, as TRL does) and no held-out evaluation (``prime.eval_every=0``). Seconds per
  iteration are the differences of ``elapsed`` in ``data/08_reporting/train_log.jsonl`` (the
  Kedro session plus the loop's bookkeeping); ``time/<node>`` split it. Iteration 0 is warm-up
  (and cheaper: policy, PRM and reference are one checkpoint there) and is excluded.
- TRL's prompts are eurus_prime's matched draw (``sample_prompts`` of iterations 0, 1, ...), in
  order (``shuffle_dataset=False``), so TRL step i and matched iteration i see the same 64 prompts.
- ``--accuracy-minutes M`` then trains both for M minutes of wall time (no new step / iteration
  after M minutes; eurus_prime at its defaults with ``prime.eval_every=0``) and evaluates SFT, the
  last eurus_prime policy and the TRL policy greedily on the first 500 test prompts with
  ``eurus-prime evaluate`` (the project's evaluation code).

Results: ``benchmarks/results/trl_compare.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import (  # noqa: E402
    EURUS_PRIME,
    ROOT,
    default_prime,
    fresh_project,
    prime_stages,
    run_logged,
    split_iterations,
    train_command,
    train_log,
    write_json,
)

INSTALL = 'pip install -c constraints-cpu.txt -e ".[bench]"'
#: The eurus_prime nodes timed are ``prime_stages(NOT_TIMED)``: every prime_iteration stage but
#: evaluate_prm (its seconds fall into "Kedro other"). Looked up where used: the TRL worker process
#: never needs them, nor the pipeline's imports.
NOT_TIMED = ("evaluate_prm",)
MATCHED = "prime.oversample_factor=1.0,prime.filter_mode=fixed_batch,prime.eval_every=0"
PHASES = ("generate", "reward", "score_other", "update")


# ----------------------------------------------------------------------------------- machine load
def wait_idle(limit_s: float, window_s: float = 10.0, threshold: float = 0.1) -> float:
    """Wait (at most ``limit_s``) until the machine's CPUs are idle for ``window_s`` (busy share below
    ``threshold``) before a timed run; returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        b0 = _busy_seconds()
        time.sleep(window_s)
        b1 = _busy_seconds()
        if b0 is None or (b1 - b0) / window_s / (os.cpu_count() or 1) < threshold:
            break
    return time.perf_counter() - start


def _busy_seconds() -> float | None:
    try:
        user, nice, system, _idle, _iowait, irq, softirq = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
        )
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------- config
def prime_config(project: Path, overrides: str = ""):
    """``PrimeConfig`` as ``conf/base/parameters.yml`` sets it, plus ``prime.a=1,prime.b=2``
    overrides (read as ``eurus-prime train --params`` reads them)."""
    from eurus_prime.prime.config import PrimeConfig
    from eurus_prime.runs.loop import parse_params

    return PrimeConfig(**{**default_prime(project), **parse_params(overrides).get("prime", {})})


def trl_settings(cfg, trainer: str) -> tuple[dict, list[tuple[str, str, str, str]]]:
    """The TRL config fields for ``cfg`` and the mapping table (prime field, value, TRL field, note)."""
    n, b = cfg.samples_per_prompt, cfg.prompts_per_step
    if (b * n) % cfg.ppo_mini_batch or cfg.ppo_mini_batch % cfg.micro_batch:
        raise SystemExit(
            "trl_compare: prompts_per_step * samples_per_prompt must be a multiple of ppo_mini_batch, "
            "and ppo_mini_batch a multiple of micro_batch"
        )
    fields = {
        "num_generations": n,
        "per_device_train_batch_size": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.ppo_mini_batch // cfg.micro_batch,
        "steps_per_generation": b * n // cfg.micro_batch,
        "max_completion_length": cfg.max_response_length,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": 0,
        "learning_rate": cfg.policy_lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "optim": "adamw_torch",
        "weight_decay": cfg.policy_weight_decay,
        "max_grad_norm": cfg.policy_grad_clip,
        "epsilon": cfg.clip_ratio,
        "num_iterations": cfg.ppo_epochs,
        "beta": 0.0,
        "reward_weights": [cfg.outcome_coef],
        "mask_truncated_completions": False,
        "shuffle_dataset": False,
        "seed": cfg.seed,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,  # TRL's default True; transformers 5 calls it activation_checkpointing
        "activation_checkpointing": False,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "eval_strategy": "no",
        "dataloader_num_workers": 0,
    }
    if trainer == "grpo":
        fields.update(
            scale_rewards="batch", loss_type="bnpo", importance_sampling_level="token", entropy_coef=cfg.entropy_coef
        )
        adv_field = '`scale_rewards="batch"`, `loss_type="bnpo"`, `importance_sampling_level="token"`'
        adv_note = (
            "GRPO centres on the group mean (= (n-1)/n x the RLOO advantage) and divides by the batch "
            "std; `bnpo` is a token mean over the mini-batch, as eurus_prime's `masked_mean`. eurus_prime "
            "whitens per token (mean and std token-weighted), TRL per sequence"
        )
    else:
        fields.update(normalize_advantages=True)
        adv_field = "RLOO advantages, `normalize_advantages=True`"
        adv_note = (
            "same leave-one-out baseline and batch whitening (per sequence in TRL, per token in "
            "eurus_prime); TRL's RLOO clips a *sequence-level* ratio, eurus_prime a token-level one"
        )
    rows = [
        (
            "prompts_per_step (B)",
            str(b),
            f"generation batch = B x n = {b * n} completions (`per_device_train_batch_size` x `steps_per_generation`)",
            "one TRL RL step = one generation batch",
        ),
        ("samples_per_prompt (n)", str(n), f"`num_generations={n}`", ""),
        (
            "oversample_factor",
            str(cfg.oversample_factor),
            "-",
            "TRL draws exactly B prompts; the matched eurus_prime run uses 1.0",
        ),
        (
            "filter_low / filter_high / filter_mode",
            f"{cfg.filter_low} / {cfg.filter_high} / {cfg.filter_mode}",
            "-",
            "TRL trains on every group (zero-variance groups get advantage 0); matched run: `fixed_batch`, "
            "which with oversample 1.0 keeps all B groups",
        ),
        (
            "max_prompt_length",
            str(cfg.max_prompt_length),
            "-",
            "no such field in TRL 1.x; the longest prompt is checked below the limit",
        ),
        ("max_response_length", str(cfg.max_response_length), f"`max_completion_length={cfg.max_response_length}`", ""),
        (
            "temperature / top_p (top_k none)",
            f"{cfg.temperature} / {cfg.top_p}",
            f"`temperature={cfg.temperature}`, `top_p={cfg.top_p}`, `top_k=0`",
            "",
        ),
        (
            "generation_batch_size",
            str(cfg.generation_batch_size),
            "-",
            "TRL (transformers backend) generates the "
            f"whole {b * n}-completion batch in one `generate` call; eurus_prime in batches of "
            f"{cfg.generation_batch_size}",
        ),
        (
            "policy_lr",
            str(cfg.policy_lr),
            f'`learning_rate={cfg.policy_lr}`, `lr_scheduler_type="constant"`, `warmup_steps=0`',
            "TRL's default schedule is linear decay",
        ),
        (
            "policy_weight_decay",
            str(cfg.policy_weight_decay),
            f'`weight_decay={cfg.policy_weight_decay}`, `optim="adamw_torch"`',
            "both torch AdamW, betas (0.9, 0.999), eps 1e-8",
        ),
        ("policy_grad_clip", str(cfg.policy_grad_clip), f"`max_grad_norm={cfg.policy_grad_clip}`", ""),
        ("clip_ratio", str(cfg.clip_ratio), f"`epsilon={cfg.clip_ratio}` (`epsilon_high` unset: symmetric)", ""),
        ("ppo_epochs", str(cfg.ppo_epochs), f"`num_iterations={cfg.ppo_epochs}`", ""),
        (
            "ppo_mini_batch",
            str(cfg.ppo_mini_batch),
            f"`per_device_train_batch_size` x `gradient_accumulation_steps` = {cfg.ppo_mini_batch}",
            f"{b * n // cfg.ppo_mini_batch} optimizer steps per RL step on both sides",
        ),
        (
            "micro_batch",
            str(cfg.micro_batch),
            f"`per_device_train_batch_size={cfg.micro_batch}`",
            "rows per forward/backward (also TRL's old-log-prob batch)",
        ),
        ("entropy_coef", str(cfg.entropy_coef), "`entropy_coef`" if trainer == "grpo" else "-", ""),
        (
            "outcome_coef",
            str(cfg.outcome_coef),
            f"`reward_weights=[{cfg.outcome_coef}]`",
            "reward = `verify_all(...).score`",
        ),
        (
            "process_coef, beta, granularity, normalisation, ref_type, prm_update, prm_lr, prm_weight_decay, "
            "prm_grad_clip, prm_mini_batch",
            "PRIME's implicit PRM",
            "-",
            "no counterpart: TRL is outcome-only "
            "(like `process_coef=0`, but eurus_prime still scores and trains the PRM then)",
        ),
        (
            "(no KL term in eurus_prime's policy loss)",
            "-",
            "`beta=0.0`",
            "TRL's beta is a KL penalty; 0 also skips loading a reference model",
        ),
        ("(advantage estimator)", "RLOO on outcome (+ process) returns, whitened", adv_field, adv_note),
        (
            "seed",
            str(cfg.seed),
            f"`seed={cfg.seed}`, `shuffle_dataset=False`",
            "TRL reads the prompts in eurus_prime's matched draw order",
        ),
        ("nonfinite", cfg.nonfinite, "-", "no TRL counterpart (never triggered here)"),
        (
            "eval_every / eval_max_items",
            f"{cfg.eval_every} / {cfg.eval_max_items}",
            '`eval_strategy="no"`',
            "matched run: `eval_every=0`",
        ),
        (
            "(fp32, no activation checkpointing)",
            "-",
            "`bf16=False`, `gradient_checkpointing=False` (`activation_checkpointing=False`), `use_cpu=True`",
            "TRL's defaults are bf16=True and gradient_checkpointing=True",
        ),
        ("(truncated responses are trained on)", "-", "`mask_truncated_completions=False`", ""),
    ]
    return fields, rows


# ----------------------------------------------------------------------------------- TRL worker
def run_trl(spec: dict) -> dict:
    """One TRL training run (in the child process): timings per optimizer step and per phase."""
    import pandas as pd
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from eurus_prime.tasks.prompting import render_prompt
    from eurus_prime.verifiers import verify_all

    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    rows = pd.read_parquet(spec["prompts"])
    messages = [[{"role": m["role"], "content": m["content"]} for m in p] for p in rows["prompt"]]
    # The prompt token ids TRL will feed the model must be eurus_prime's (generate_rollouts): check them all.
    ours = [tok(render_prompt(tok, m), add_special_tokens=False)["input_ids"] for m in messages]
    theirs = tok.apply_chat_template(
        conversation=messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    if ours != theirs:
        bad = next(i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        raise SystemExit(f"trl_compare: prompt {rows['prompt_id'].iloc[bad]} tokenizes differently in TRL")
    longest = max(map(len, ours))
    if longest > spec["max_prompt_length"]:
        raise SystemExit(f"trl_compare: a prompt has {longest} tokens > prime.max_prompt_length")
    dataset = Dataset.from_dict(
        {
            "prompt": messages,
            "ability": list(rows["ability"]),
            "ground_truth": list(rows["ground_truth"]),
            "prompt_id": list(rows["prompt_id"]),
        }
    )

    phases = dict.fromkeys(PHASES, 0.0)
    rewards: list[float] = []

    def outcome_reward(prompts, completions, ability, ground_truth, **_):
        """eurus_prime's verifiers; each distinct (ability, response, ground truth) graded once."""
        t = time.perf_counter()
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        triples = list(zip(ability, texts, ground_truth))
        distinct = list(dict.fromkeys(triples))
        verdicts = dict(zip(distinct, verify_all(*map(list, zip(*distinct)))))
        scores = [float(verdicts[x].score) for x in triples]
        rewards.append(sum(scores) / len(scores))
        phases["reward"] += time.perf_counter() - t
        return scores

    fields = dict(spec["fields"], output_dir=spec["output_dir"], logging_steps=fields_steps(spec))
    if spec["trainer"] == "grpo":
        args, Trainer = trl.GRPOConfig(**fields), trl.GRPOTrainer
    else:
        args, Trainer = trl.RLOOConfig(**fields), trl.RLOOTrainer
    spg = args.steps_per_generation

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.steps: list[float] = []
            self.rl_steps: list[dict] = []
            self.last = self.begin = 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.begin = self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.steps.append(now - self.last)
            self.last = now
            if state.global_step % spg == 0:
                seconds = sum(self.steps[-spg:])
                scored = phases.pop("_scored", 0.0)
                split = {
                    "generate": phases["generate"],
                    "reward": phases["reward"],
                    "score_other": scored - phases["generate"] - phases["reward"],
                    "update": seconds - scored,
                }
                self.rl_steps.append(
                    {
                        "rl_step": len(self.rl_steps),
                        "seconds": seconds,
                        **split,
                        "reward_mean": rewards[-1] if rewards else None,
                    }
                )
                for k in PHASES:
                    phases[k] = 0.0
                if spec.get("budget_s") and now - self.begin >= spec["budget_s"]:
                    control.should_training_stop = True

    timer = StepTimer()
    trainer = Trainer(
        model=model,
        reward_funcs=outcome_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[timer],
    )

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    trainer._generate = timed("generate", trainer._generate)  # tokenize, generate, decode
    trainer._generate_and_score_completions = timed("_scored", trainer._generate_and_score_completions)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    if spec.get("save_to"):
        trainer.save_model(spec["save_to"])
        tok.save_pretrained(spec["save_to"])
    return {
        "trainer": type(trainer).__name__,
        "steps_per_generation": spg,
        "generation_batch_size": args.generation_batch_size,
        "optimizer_steps": trainer.state.global_step,
        "optimizer_step_seconds": timer.steps,
        "rl_steps": timer.rl_steps,
        "train_wall_seconds": wall,
        "log_history": trainer.state.log_history,
        "torch_threads": torch.get_num_threads(),
        "bf16": args.bf16,
        "activation_checkpointing": getattr(model, "is_activation_checkpointing", None),
        "model_dtype": str(next(model.parameters()).dtype),
    }


def fields_steps(spec: dict) -> int:
    return spec["fields"]["steps_per_generation"]


def trl_child(spec: dict, workdir: Path, log_name: str) -> dict:
    """Run ``run_trl`` in a fresh Python process (its own threads, memory and verifier pool)."""
    spec_path, out_path = workdir / f"{log_name}_spec.json", workdir / f"{log_name}_result.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, __file__, "--trl-worker", str(spec_path), str(out_path)]
    code, _, load = run_logged(cmd, workdir, f"{log_name}.log")
    if code:
        tail = (workdir / f"{log_name}.log").read_text()[-3000:]
        raise SystemExit(f"trl_compare: the TRL run failed (exit {code}); log tail:\n{tail}")
    return {**json.loads(out_path.read_text()), "machine_load": load.foreign()}


# ----------------------------------------------------------------------------------- eurus_prime
def run_eurus(project: Path, iterations: int, params: str, time_budget: float | None = None) -> dict:
    cmd = train_command(project, iterations, params, time_budget=time_budget or None)
    code, wall, load = run_logged(cmd, project)
    if code:
        raise SystemExit(
            f"trl_compare: `{' '.join(cmd)}` failed (exit {code}); log tail:\n"
            + (project / "train.log").read_text()[-3000:]
        )
    rows = train_log(project)
    per_iter = []
    for r, part in zip(rows, split_iterations(rows, prime_stages(NOT_TIMED))):
        per_iter.append(
            {
                "iteration": r["iteration"],
                "seconds": part["wall"],
                "session_seconds": r["seconds"],
                "nodes": part["nodes"],
                "io": part["io_load"] + part["io_save"],
                "kedro_other": part["kedro_other"],
                "loop_bookkeeping": part["loop_bookkeeping"],
                "rollouts": r.get("rollout/responses"),
                "groups_selected": r.get("filter/selected"),
                "train_verify_score": r.get("train_verify_score/all"),
                "eval_all": r.get("eval/all"),
            }
        )
    return {
        "command": " ".join(["eurus-prime"] + cmd[1:]),
        "params": params,
        "process_wall_seconds": wall,
        "per_iteration": per_iter,
        "machine_load": load.foreign(),
    }


# ----------------------------------------------------------------------------------- summaries
def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def median(xs):
    import statistics

    return statistics.median(xs) if xs else float("nan")


def summarise_trl(res: dict) -> dict:
    steady = res["rl_steps"][1:] or res["rl_steps"]
    return {
        "seconds_per_rl_step": mean([s["seconds"] for s in steady]),
        "median_seconds_per_rl_step": median([s["seconds"] for s in steady]),
        "seconds_per_optimizer_step": mean(
            res["optimizer_step_seconds"][res["steps_per_generation"] :] or res["optimizer_step_seconds"]
        ),
        "phases": {p: mean([s[p] for s in steady]) for p in PHASES},
        "measured_rl_steps": len(steady),
    }


def summarise_eurus(res: dict) -> dict:
    steady = res["per_iteration"][1:] or res["per_iteration"]
    return {
        "seconds_per_iteration": mean([p["seconds"] for p in steady]),
        "median_seconds_per_iteration": median([p["seconds"] for p in steady]),
        "nodes": {n: mean([p["nodes"][n] for p in steady]) for n in prime_stages(NOT_TIMED)},
        "io": mean([p["io"] for p in steady]),
        "kedro_other": mean([p["kedro_other"] for p in steady]),
        "loop_bookkeeping": mean([p["loop_bookkeeping"] for p in steady]),
        "rollouts": mean([p["rollouts"] for p in steady]),
        "groups_selected": mean([p["groups_selected"] for p in steady]),
        "measured_iterations": len(steady),
    }


def evaluate_both(project: Path, trl_dir: Path) -> dict:
    """Greedy pass@1 of SFT, the last eurus_prime policy and the TRL policy on the first 500 test prompts."""
    import pandas as pd

    from eurus_prime.datasets.versions import latest_version

    cmd = [
        EURUS_PRIME,
        "evaluate",
        "--project",
        str(project),
        "--checkpoint",
        "sft",
        "--checkpoint",
        "latest",
        "--checkpoint",
        str(trl_dir),
        "--suite",
        "test",
        "--max-items",
        "500",
    ]
    if run_logged(cmd, project, "evaluate.log", monitor=False)[0]:
        raise SystemExit("trl_compare: evaluation failed; log tail:\n" + (project / "evaluate.log").read_text()[-3000:])
    table = pd.read_parquet(latest_version(project / "data/08_reporting/evaluation/eval_table.parquet"))
    table = table[(table["method"] == "greedy") & (table["suite"] == "test")]
    out: dict = {}
    for _, r in table.iterrows():
        out.setdefault(r["checkpoint"], {})[r["data_source"]] = {"n": int(r["n"]), "accuracy": float(r["accuracy"])}
    return {"command": " ".join(["eurus-prime"] + cmd[1:]), "accuracy": out}


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("trl", "transformers", "torch", "accelerate", "datasets", "kedro")} | {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


# ----------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--trl-steps", type=int, default=6, help="TRL RL steps (generation batches); the first is warm-up (default 6)"
    )
    ap.add_argument(
        "--iterations",
        type=int,
        default=6,
        help="eurus_prime iterations per setting; iteration 0 is warm-up (default 6)",
    )
    ap.add_argument("--trainer", choices=("grpo", "rloo"), default="grpo")
    ap.add_argument(
        "--accuracy-minutes",
        type=float,
        default=0.0,
        help="also train both for this many minutes and compare held-out accuracy (0: skip)",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        help="before each timed run, wait up to this many seconds for idle CPUs (0: don't wait)",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=0,
        help="rerun a timed run this many times when other "
        "processes took more than 5%% of the machine during it (the least disturbed one is kept)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary projects and TRL output")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/trl_compare")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the existing .json")
    ap.add_argument("--trl-worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        render(args.out)
        return
    if args.trl_worker:
        spec = json.loads(Path(args.trl_worker[0]).read_text())
        Path(args.trl_worker[1]).write_text(json.dumps(run_trl(spec), default=float))
        return
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit(f"trl_compare: TRL is not installed. Install the bench extra: {INSTALL}") from None
    if min(args.trl_steps, args.iterations) < 2:
        raise SystemExit("trl_compare: --trl-steps and --iterations must be >= 2 (the first is warm-up)")

    import pandas as pd

    from eurus_prime.datasets.versions import latest_version
    from eurus_prime.prime.rollouts import sample_prompts

    tmp = Path(tempfile.mkdtemp(prefix="eurus_prime_trl_compare_"))
    print(f"work folder: {tmp}", flush=True)
    started = time.perf_counter()
    cfg = prime_config(ROOT)
    matched = prime_config(ROOT, MATCHED)
    fields, mapping = trl_settings(cfg, args.trainer)

    def trl_spec(project: Path, steps: int, out: str, budget_s: float | None = None, save_to: Path | None = None):
        prompts = pd.read_parquet(latest_version(project / "data/02_primary/prompts_train.parquet"))
        drawn = pd.concat([sample_prompts(prompts, matched, i) for i in range(steps)], ignore_index=True)
        path = tmp / f"{out}_prompts.parquet"
        drawn[["prompt_id", "ability", "prompt", "ground_truth"]].to_parquet(path)
        return {
            "trainer": args.trainer,
            "fields": dict(fields, max_steps=steps * fields["steps_per_generation"]),
            "model": str(latest_version(project / "data/06_models/sft_model")),
            "tokenizer": str(latest_version(project / "data/06_models/tokenizer")),
            "prompts": str(path),
            "output_dir": str(tmp / out),
            "max_prompt_length": cfg.max_prompt_length,
            "budget_s": budget_s,
            "save_to": str(save_to) if save_to else None,
        }

    def timed_run(label: str, run):
        """``run(attempt)`` after waiting for idle CPUs; again (up to --retries) when other processes
        took more than 5% of the machine meanwhile. Keeps the least disturbed attempt."""
        best = None
        for attempt in range(args.retries + 1):
            waited = wait_idle(args.wait_idle) if args.wait_idle else 0.0
            print(f"{label} (attempt {attempt + 1}, waited {waited:.0f} s for idle CPUs) ...", flush=True)
            res = run(attempt)
            res["machine_load"]["waited_for_idle_seconds"] = waited
            share = res["machine_load"]["foreign_share_of_machine"]
            print(f"  other processes used {100 * share:.1f}% of the machine", flush=True)
            if best is None or share < best["machine_load"]["foreign_share_of_machine"]:
                best = res
            if share <= 0.05:
                break
        best["attempts"] = attempt + 1
        return best

    def copy(name: str, attempt: int) -> Path:
        return fresh_project(tmp / f"eurus_{name}_{attempt}", with_sft_from=ROOT)

    trl_res = timed_run(
        f"TRL {args.trainer}: {args.trl_steps} RL steps",
        lambda a: trl_child(trl_spec(ROOT, args.trl_steps, f"trl_{a}"), tmp, f"trl_{a}"),
    )
    runs = {}
    for name, params in (("matched", MATCHED), ("default", "")):
        runs[name] = timed_run(
            f"eurus_prime {name}: {args.iterations} iterations",
            lambda a, name=name, params=params: run_eurus(copy(name, a), args.iterations, params),
        )

    trl_sum = summarise_trl(trl_res)
    eurus_sum = {k: summarise_eurus(v) for k, v in runs.items()}
    ratios = {k: v["seconds_per_iteration"] / trl_sum["seconds_per_rl_step"] for k, v in eurus_sum.items()}
    ratios_median = {
        k: v["median_seconds_per_iteration"] / trl_sum["median_seconds_per_rl_step"] for k, v in eurus_sum.items()
    }

    accuracy = None
    if args.accuracy_minutes > 0:
        budget = args.accuracy_minutes * 60
        acc_project = fresh_project(tmp / "eurus_accuracy", with_sft_from=ROOT)
        trl_dir = tmp / f"trl_{args.trainer}_policy"
        if args.wait_idle:
            wait_idle(args.wait_idle)
        print(f"accuracy: TRL for {args.accuracy_minutes} min ...", flush=True)
        steps_cap = int(budget // 2) + 10  # more than fit (a step takes seconds): the callback stops at the budget
        acc_trl = trl_child(trl_spec(acc_project, steps_cap, "trl_accuracy", budget, trl_dir), tmp, "trl_accuracy")
        if args.wait_idle:
            wait_idle(args.wait_idle)
        print(f"accuracy: eurus_prime for {args.accuracy_minutes} min ...", flush=True)
        acc_eurus = run_eurus(acc_project, 100000, "prime.eval_every=0", time_budget=budget)
        print("accuracy: evaluating ...", flush=True)
        accuracy = {
            "minutes": args.accuracy_minutes,
            "eurus_params": "prime.eval_every=0",
            "trl_rl_steps": len(acc_trl["rl_steps"]),
            "trl_train_wall_seconds": acc_trl["train_wall_seconds"],
            "trl_reward_by_step": [s["reward_mean"] for s in acc_trl["rl_steps"]],
            "eurus_iterations": len(acc_eurus["per_iteration"]),
            "eurus_train_wall_seconds": sum(p["seconds"] for p in acc_eurus["per_iteration"]),
            "eurus_command": acc_eurus["command"],
            **evaluate_both(acc_project, trl_dir),
            "machine_load": {"trl": acc_trl["machine_load"], "eurus_prime": acc_eurus["machine_load"]},
            "trl_label": trl_dir.name,
        }

    summary = {
        "command": "python benchmarks/trl_compare.py " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "trainer": args.trainer,
        "trl_fields": fields,
        "prime_defaults": cfg.as_dict(),
        "matched_params": MATCHED,
        "trl": {**trl_sum, "raw": trl_res},
        "eurus_prime": {k: {**eurus_sum[k], "raw": runs[k]} for k in runs},
        "ratio_eurus_over_trl": ratios,
        "ratio_eurus_over_trl_median": ratios_median,
        "accuracy": accuracy,
        "script_wall_seconds": time.perf_counter() - started,
    }
    write_json(args.out.with_suffix(".json"), summary, default=float)
    render(args.out)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


def render(out: Path) -> None:
    """Write ``out``.md from ``out``.json (also on its own: ``--render``, after changing the report)."""
    from eurus_prime.prime.config import PrimeConfig

    summary = json.loads(out.with_suffix(".json").read_text())
    cfg = PrimeConfig(**summary["prime_defaults"])
    md = markdown(summary, trl_settings(cfg, summary["trainer"])[1], cfg)
    out.with_suffix(".md").write_text(md)
    print(md)


def markdown(s: dict, mapping, cfg) -> str:
    t, e, r = s["trl"], s["eurus_prime"], s["ratio_eurus_over_trl"]
    v = s["versions"]
    trainer = t["raw"]["trainer"]
    b, n = cfg.prompts_per_step, cfg.samples_per_prompt
    spg = t["raw"]["steps_per_generation"]
    lines = [
        "# eurus_prime PRIME iteration vs TRL outcome-only RL step (tiny world, CPU)",
        "",
        f"Command: `{s['command']}`",
        "",
        f"TRL {v['trl']} ({trainer}), transformers {v['transformers']}, torch {v['torch']}, accelerate "
        f"{v['accelerate']}; {v['cpu_count']} CPU cores, {t['raw']['torch_threads']} torch threads. Same SFT "
        "checkpoint, tokenizer, training prompts (token-identical chat rendering), verifiers, sampling and "
        "optimizer settings on both sides (mapping below). Run one after the other in one invocation; the "
        f"first TRL RL step and eurus_prime iteration 0 are warm-up and excluded.",
        "",
        "## Seconds per RL step",
        "",
        "| run | rollouts generated / trained per step | s per step (mean) | eurus_prime / TRL (mean) "
        "| s per step (median) | eurus_prime / TRL (median) |",
        "|---|---|---|---|---|---|",
        f"| TRL `{trainer}` ({t['measured_rl_steps']} steps: B={b} prompts x n={n}, {spg} optimizer steps) | "
        f"{b * n} / {b * n} | {t['seconds_per_rl_step']:.2f} | 1.00 | {t['median_seconds_per_rl_step']:.2f} | 1.00 |",
    ]
    rm = s["ratio_eurus_over_trl_median"]
    labels = {"matched": f"eurus_prime matched (`{s['matched_params']}`)", "default": "eurus_prime defaults"}
    for k in ("matched", "default"):
        x = e[k]
        trained = x["groups_selected"] * n
        lines.append(
            f"| {labels[k]} ({x['measured_iterations']} iterations) | {x['rollouts']:.0f} / {trained:.0f} | "
            f"{x['seconds_per_iteration']:.2f} | {r[k]:.2f} | {x['median_seconds_per_iteration']:.2f} | {rm[k]:.2f} |"
        )
    lines += [
        "",
        f"TRL per optimizer step: {t['seconds_per_optimizer_step']:.2f} s (the step that generates "
        f"carries the generation; {spg} optimizer steps per RL step). Per step (s): TRL "
        + ", ".join(f"{x['seconds']:.2f}" for x in t["raw"]["rl_steps"])
        + "; eurus_prime matched "
        + ", ".join(f"{p['seconds']:.2f}" for p in e["matched"]["raw"]["per_iteration"])
        + "; defaults "
        + ", ".join(f"{p['seconds']:.2f}" for p in e["default"]["raw"]["per_iteration"])
        + " (the first of each is warm-up).",
        "",
    ]
    loads = [("TRL", t["raw"]["machine_load"])] + [
        (labels[k], e[k]["raw"]["machine_load"]) for k in ("matched", "default")
    ]
    busy = max(x["foreign_share_of_machine"] for _, x in loads)
    lines += [
        "Machine load from other processes during each run (CPU time of processes outside this script's "
        "process tree, sampled from `/proc` every second, as a share of the whole machine): "
        + "; ".join(f"{name.split(' (')[0]} {100 * x['foreign_share_of_machine']:.1f}%" for name, x in loads)
        + "."
        + (
            " **Other work competed for the CPUs: these timings are not clean** (busiest: "
            + "; ".join(
                f"{name.split(' (')[0]}: {', '.join(x['top_foreign'])}" for name, x in loads if x["top_foreign"]
            )
            + ")."
            if busy > 0.05
            else ""
        ),
        "",
    ]
    eval_iters = [p["iteration"] for p in e["default"]["raw"]["per_iteration"][1:] if p["nodes"]["evaluate_policy"] > 0]
    lines += [
        f"eurus_prime defaults evaluate 500 held-out prompts every {cfg.eval_every} iterations "
        f"(among the measured ones: iteration(s) {eval_iters or 'none'}), which is in their mean; the "
        "matched run has `eval_every=0`.",
        "",
    ]

    lines += [
        "## Where the time goes (s per step, means over the measured steps)",
        "",
        "| part | TRL | eurus_prime matched | eurus_prime defaults |",
        "|---|---|---|---|",
    ]
    ph = t["phases"]
    em, ed = e["matched"], e["default"]
    rows = [
        ("generate rollouts (`generate_rollouts`; TRL `_generate`)", ph["generate"], "generate_rollouts"),
        ("verify (`verify_outcomes`; TRL reward function)", ph["reward"], "verify_outcomes"),
        (
            "old-policy log-probs etc. (`compute_process_rewards`: old, reference and PRM log-probs; TRL: old "
            "log-probs, advantages)",
            ph["score_other"],
            "compute_process_rewards",
        ),
        ("PRM update (`update_prm`)", None, "update_prm"),
        ("advantages (`estimate_advantages`)", None, "estimate_advantages"),
        ("policy update (`update_policy`; TRL optimizer steps incl. logging)", ph["update"], "update_policy"),
        ("held-out evaluation (`evaluate_policy`)", None, "evaluate_policy"),
        ("`sample_prompts` + `filter_prompts`", None, None),
    ]
    for label, tv, node in rows:
        if node is None:
            mv = em["nodes"]["sample_prompts"] + em["nodes"]["filter_prompts"]
            dv = ed["nodes"]["sample_prompts"] + ed["nodes"]["filter_prompts"]
        else:
            mv, dv = em["nodes"][node], ed["nodes"][node]
        lines.append(f"| {label} | {'-' if tv is None else f'{tv:.2f}'} | {mv:.2f} | {dv:.2f} |")
    for label, key in (
        ("dataset loads + saves (Parquet, checkpoints)", "io"),
        ("Kedro session, catalog, hooks, kedro-mlflow", "kedro_other"),
        ("training loop: stage checks, MLflow campaign, retention", "loop_bookkeeping"),
    ):
        lines.append(f"| {label} | - | {em[key]:.2f} | {ed[key]:.2f} |")
    lines.append(
        f"| **total** | {t['seconds_per_rl_step']:.2f} | {em['seconds_per_iteration']:.2f} | "
        f"{ed['seconds_per_iteration']:.2f} |"
    )
    lines += [
        "",
        "TRL's phases come from wrapping `_generate` (tokenize + `model.generate` + decode), the reward "
        "function and `_generate_and_score_completions`; `update` is the rest of the RL step (forward, "
        "backward, AdamW, Trainer bookkeeping and logging).",
        "",
    ]

    lines += ["## eurus_prime per node, per iteration (s, `time/<node>` of `train_log.jsonl`)", ""]
    short = (
        "generate_rollouts",
        "verify_outcomes",
        "compute_process_rewards",
        "update_prm",
        "update_policy",
        "evaluate_policy",
    )
    for k in ("matched", "default"):
        lines += [
            f"{labels[k]}: `{e[k]['raw']['command']}`",
            "",
            "| iteration | wall s | " + " | ".join(short) + " | other nodes | I/O | Kedro + loop | rollouts | "
            "groups trained |",
            "|" + "---|" * (len(short) + 7),
        ]
        for p in e[k]["raw"]["per_iteration"]:
            other = sum(p["nodes"].values()) - sum(p["nodes"][x] for x in short)
            lines.append(
                f"| {p['iteration']} | {p['seconds']:.2f} | "
                + " | ".join(f"{p['nodes'][x]:.2f}" for x in short)
                + f" | {other:.2f} | {p['io']:.2f} | {p['kedro_other'] + p['loop_bookkeeping']:.2f} | "
                f"{p['rollouts']:.0f} | {p['groups_selected']:.0f} |"
            )
        lines.append("")

    lines += [
        "## TRL per RL step",
        "",
        "| step | s | generate | reward | old log-probs etc. | update | mean reward |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in t["raw"]["rl_steps"]:
        lines.append(
            f"| {x['rl_step']} | {x['seconds']:.2f} | {x['generate']:.2f} | {x['reward']:.2f} | "
            f"{x['score_other']:.2f} | {x['update']:.2f} | {x['reward_mean']:.3f} |"
        )
    lines.append("")

    if s["accuracy"]:
        a = s["accuracy"]
        lines += [
            f"## Equal wall time: {a['minutes']:g} minutes of training, then held-out accuracy",
            "",
            f"eurus_prime: `{a['eurus_command']}` ({a['eurus_iterations']} iterations); TRL: "
            f"{a['trl_rl_steps']} RL steps ({a['trl_train_wall_seconds']:.0f} s in `trainer.train()`). "
            "Neither starts a new step after the budget. Greedy pass@1 on the first 500 test prompts: "
            f"`{a['command']}`",
            "",
            "Other processes used "
            + ", ".join(f"{100 * x['foreign_share_of_machine']:.1f}% ({k})" for k, x in a["machine_load"].items())
            + " of the machine meanwhile.",
            "",
            "| checkpoint | all | math | code |",
            "|---|---|---|---|",
        ]
        acc = a["accuracy"]
        for ck, label in [(k, k) for k in acc]:
            parts = acc[ck]
            by_ability = {}
            for src, val in parts.items():
                if src == "all":
                    continue
                ab = "code" if "code" in src else "math"
                by_ability.setdefault(ab, []).append(val)
            cells = [f"{100 * parts['all']['accuracy']:.1f}%"]
            for ab in ("math", "code"):
                vals = by_ability.get(ab, [])
                tot = sum(x["n"] for x in vals)
                cells.append(f"{100 * sum(x['accuracy'] * x['n'] for x in vals) / tot:.1f}%" if tot else "-")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += [
        "## Configuration mapping (eurus_prime `PrimeConfig` -> TRL `"
        + ("GRPOConfig" if trainer.startswith("GRPO") else "RLOOConfig")
        + "`)",
        "",
        "| eurus_prime (`conf/base/parameters.yml: prime`) | value | TRL | note |",
        "|---|---|---|---|",
    ]
    for row in mapping:
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in row) + " |")
    lines += [
        "",
        "## Not matched",
        "",
        "- The algorithms differ by design: PRIME also scores every trained rollout under the reference and "
        "the implicit PRM, updates the PRM, and adds process returns to the advantages; TRL here is "
        "outcome-only. That work is part of an eurus_prime iteration and of the ratio.",
        "- eurus_prime writes every stage boundary to disk (Parquet tables, checkpoint folders with the AdamW "
        "state) and runs each iteration as a Kedro session tracked in MLflow; TRL keeps everything in memory "
        "in one `Trainer`. The rows for I/O, Kedro and the loop show what that costs.",
        "- At the defaults eurus_prime generates and verifies ceil(B x oversample_factor) x n rollouts and "
        "trains only on groups inside the accuracy band (so fewer than B groups when the band is thin); "
        "the matched run draws B prompts and trains every group, as TRL does.",
        "- Sampling uses the same settings but not the same random streams, and eurus_prime sorts prompts by "
        "length before generating; the responses (and so the lengths that drive the cost) differ.",
        "- Advantage normalisation and loss aggregation are close but not identical (see the mapping).",
        "- TRL has no prompt-length limit field in 1.x (the longest prompt is checked against "
        "`max_prompt_length` instead) and no non-finite-step policy.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
