"""Do dense rewards change the policy update? Outcome-only and oracle advantages on the same real batch.

    python benchmarks/credit_gradients.py --run /path/to/chains/arm/project --iterations 1 3 8 14

``--run`` is a chains-world project that trained with ``prime.process_reward=oracle`` (for example
an ``oracle_local`` arm of benchmarks/credit_assignment.py), so its ``prm_rewards`` tables hold the
oracle's token rewards: -1 on the tokens of each rollout's ground-truth first wrong field. For each
iteration k, on the batch the policy was updated on and with the policy that sampled it and that the update
started from (``policy/iter_{k}``, written by iteration k-1; the SFT model at k = 0; checked
against the rollouts' ``policy_version``), this computes three advantage sets with
``core.advantages.prime_advantages`` (the pipeline's code):

- ``rloo``: the outcome only (``process_coef=0``);
- ``oracle``: outcome plus the oracle's process rewards through PRIME's gamma-1 returns;
- ``oracle_local``: the same with ``process_gamma=0``;

and the gradient of the policy-gradient loss at ratio 1 (``-sum adv * logp / tokens``, PPO's first
step) for each. Reported, between ``rloo`` and each oracle arm:

- ``cosine``: cosine similarity of the two full gradients;
- ``sign_agreement``: share of weights whose gradients have the same sign, weighted by the
  oracle gradient's magnitude. Adam's first step on a fresh moment is ``lr * sign(g)`` and
  later steps stay close to it when the gradient is consistent, so this share is how alike
  the two *Adam* updates are.
- ``rloo_halves_cosine``: for scale, the cosine between the RLOO gradients of the batch's first
  and second half of groups: how much two draws of the same arm differ;
- on the blamed tokens (the first wrong field of each failed rollout, where the oracle puts its
  -1): the share that each arm's advantage pushes down (advantage < 0), and on the tokens of
  the *other* steps of failed rollouts the share pushed down (the outcome blames them too).

Results: benchmarks/results/credit_gradients.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, iteration_table, write_json, write_markdown  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))
from eurus_prime.core.advantages import prime_advantages  # noqa: E402
from eurus_prime.prime.batch import forward_rows, pad_values  # noqa: E402

ARMS = {"rloo": (0.0, 1.0), "oracle": (1.0, 1.0), "oracle_local": (1.0, 0.0)}  # (process_coef, gamma)


def _policy_dir(project: Path, iteration: int, sampled_by: str) -> Path:
    """The checkpoint iteration ``iteration`` sampled its rollouts with and updated from: the SFT
    model at 0, else ``policy/iter_{iteration}`` (what iteration - 1 wrote); ``sampled_by`` is
    the rollouts' ``policy_version``, which must name that version."""
    from eurus_prime.datasets.versions import latest_version
    from eurus_prime.runs.layout import iter_dir

    folder = project / "data/06_models" / ("sft_model" if iteration == 0 else f"policy/{iter_dir(iteration)}")
    path = latest_version(folder)
    if path is None or not sampled_by.endswith("@" + path.parent.name):
        raise ValueError(
            f"{project} iteration {iteration}: its rollouts were sampled by {sampled_by!r}, but the newest "
            f"checkpoint in {folder} is {path}"
        )
    return path


def measure(project: Path, iteration: int, micro: int = 32) -> dict:
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    prm = iteration_table(project, iteration, "prm_rewards")
    if set(prm["process_reward"]) != {"oracle"}:
        raise ValueError(
            f"{project} iteration {iteration}: prm_rewards.process_reward is {sorted(set(prm['process_reward']))}, "
            "not oracle: pass a run trained with prime.process_reward=oracle"
        )
    key = ["prompt_id", "sample_idx"]
    rollouts = iteration_table(project, iteration, "rollouts")
    (sampled_by,) = set(rollouts["policy_version"])  # the sync guard: one policy per iteration
    data = (
        iteration_table(project, iteration, "advantages")[key + ["outcome"]]
        .merge(prm[key + ["token_rewards"]], on=key, validate="one_to_one")
        .merge(rollouts[key + ["prompt_ids", "response_ids"]], on=key, validate="one_to_one")
        .sort_values(key, kind="mergesort")
        .reset_index(drop=True)
    )
    n = int(data.groupby("prompt_id").size().iloc[0])
    width = int(data["response_ids"].map(len).max())
    mask = pad_values([np.ones(len(r), np.float32) for r in data["response_ids"]], width)
    process = pad_values(list(data["token_rewards"]), width)
    outcome = torch.tensor(data["outcome"].to_numpy(), dtype=torch.float32)
    advs = {
        arm: prime_advantages(process, outcome, mask, n, process_coef=coef, process_gamma=gamma)[1]
        for arm, (coef, gamma) in ARMS.items()
    }
    model = AutoModelForCausalLM.from_pretrained(_policy_dir(project, iteration, sampled_by), dtype=torch.float32)
    model.train()
    pad = int(model.config.pad_token_id if model.config.pad_token_id is not None else 0)
    tokens = float(mask.sum())
    halves = {"rloo_a": torch.arange(len(data)) < (len(data) // n // 2) * n}
    halves["rloo_b"] = ~halves["rloo_a"]
    grads = {arm: [torch.zeros_like(p) for p in model.parameters()] for arm in (*ARMS, *halves)}
    for start in range(0, len(data), micro):
        rows = list(range(start, min(start + micro, len(data))))
        packed, logp = forward_rows(model, data["prompt_ids"], data["response_ids"], rows, pad, grad=True)
        w = packed.response_width
        parts = [(arm, advs[arm][rows, :w]) for arm in ARMS]
        parts += [(h, advs["rloo"][rows, :w] * keep[rows].float()[:, None]) for h, keep in halves.items()]
        for j, (arm, adv) in enumerate(parts):
            loss = -(adv * logp * mask[rows, :w]).sum() / tokens
            g = torch.autograd.grad(loss, list(model.parameters()), retain_graph=j < len(parts) - 1, allow_unused=True)
            for acc, gi in zip(grads[arm], g):
                if gi is not None:
                    acc += gi
    flat = {arm: torch.cat([g.reshape(-1) for g in gs]) for arm, gs in grads.items()}
    out_halves = float(torch.nn.functional.cosine_similarity(flat["rloo_a"], flat["rloo_b"], dim=0))
    blamed = process < 0  # the oracle's -1 sits on the first wrong field's tokens
    failed = (outcome < 0.5)[:, None] & (mask > 0) & ~blamed
    out: dict = {
        "iteration": iteration,
        "responses": len(data),
        "failed": int((outcome < 0.5).sum()),
        "rloo_halves_cosine": out_halves,
    }
    for arm in ARMS:
        out[f"{arm}_blamed_pushed_down"] = float((advs[arm][blamed] < 0).float().mean())
        out[f"{arm}_other_failed_tokens_pushed_down"] = float((advs[arm][failed] < 0).float().mean())
    for arm in ("oracle", "oracle_local"):
        a, b = flat["rloo"], flat[arm]
        out[f"{arm}_cosine"] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        same = (torch.sign(a) == torch.sign(b)).float()
        out[f"{arm}_sign_agreement"] = float((same * b.abs()).sum() / b.abs().sum())
        out[f"{arm}_norm_ratio"] = float(b.norm() / a.norm())
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a chains project trained with prime.process_reward=oracle")
    ap.add_argument("--iterations", type=int, nargs="+", default=[0, 3, 8, 14])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/credit_gradients")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    for k in args.iterations:
        rows.append(measure(args.run, k))
        print({key: round(v, 3) if isinstance(v, float) else v for key, v in rows[-1].items()}, flush=True)
    result = {
        "command": "python benchmarks/credit_gradients.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
    }
    write_json(args.out.with_suffix(".json"), result)
    lines = [
        "# Outcome-only and oracle gradients on the same real batches (benchmarks/credit_gradients.py)",
        "",
        f"Command: `{result['command'].strip()}` ({result['seconds']} s). Definitions in the script's docstring.",
        "",
        "| iteration | failed / responses | cosine rloo-oracle | cosine rloo-oracle_local | cosine rloo half-rloo half | Adam sign agreement rloo-oracle | rloo-oracle_local | blamed tokens pushed down: rloo / oracle / local | other tokens of failed rollouts pushed down: rloo / oracle / local |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['iteration']} | {r['failed']} / {r['responses']} | {r['oracle_cosine']:.3f} | {r['oracle_local_cosine']:.3f} | "
            f"{r['rloo_halves_cosine']:.3f} | "
            f"{r['oracle_sign_agreement']:.3f} | {r['oracle_local_sign_agreement']:.3f} | "
            + " / ".join(f"{r[f'{a}_blamed_pushed_down']:.2f}" for a in ARMS)
            + " | "
            + " / ".join(f"{r[f'{a}_other_failed_tokens_pushed_down']:.2f}" for a in ARMS)
            + " |"
        )
    write_markdown(args.out.with_suffix(".md"), lines)
    return result


if __name__ == "__main__":
    main()
