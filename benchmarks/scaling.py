"""How the cost of a PRIME iteration grows: prompts per step, samples per prompt, response length.

    python benchmarks/scaling.py                # one axis at a time + 3 diagonal points, ~12 min on 2 quiet cores
    python benchmarks/scaling.py --quick        # 3 points (16, 32, 64 prompts per step), ~1.5 min
    python benchmarks/scaling.py --params prime.rollout_engine=fast   # any params, every point
    python benchmarks/scaling.py --points 64x4x128,128x2x128           # your own points: PxNxL
    python benchmarks/scaling.py --from-json benchmarks/results/scaling.json   # refit and replot only

A full grid is too slow on 2 cores, so each axis is varied around the default (64 prompts, 4
samples, 128 tokens): prompts per step 16..256, samples per prompt 2..8, max response length
32..256, plus diagonal points with the default's generated rollouts split differently (128x2,
32x8) and with about its generated tokens in shorter sequences (128 prompts, 32 tokens).

Each point is a fresh copy of the project (with this checkout's SFT model) running
``eurus-prime train --iterations 2`` with the point's ``prime.prompts_per_step``,
``prime.samples_per_prompt``, ``prime.max_response_length`` and ``prime.eval_every=0`` (held-out
evaluation would dominate); ``oversample_factor`` stays 2, so 2P prompts x N samples are
generated, and the accuracy filter decides how many groups (at most P) are trained on. Iteration 0
is warm-up; iteration 1 (1..K-1 with ``--iterations K``) is measured: ``time/<node>`` and the
session's seconds from ``train_log.jsonl``, and from the iteration's tables:

- generated rollouts and generated tokens (sum of response lengths, ``rollouts.parquet``);
- the padded decode work of the HF engine (``generate`` runs each batch of
  ``generation_batch_size`` prompt-length-sorted sequences until its longest response ends:
  sum of batch size x longest response), the distinct responses (what the verifier grades);
- trained rollouts and trained tokens (prompt + response tokens of the selected groups, which
  every scoring and update pass reads; ``filter_report.parquet``), and the sum of squared
  sequence lengths (what attention would add).

Fits, per node, ``seconds = a + b * tokens`` (least squares) against the tokens that node
processes (generation and verification: generated tokens; the reward and update nodes: trained
tokens; the iteration: both together), with R^2, the residuals along each axis, the intercept's
share at the default point (a fixed per-iteration cost), and a second fit with a squared-length
term (attention). Results: ``benchmarks/results/scaling.{json,md,png}``.

Other work on the machine slows a run down a lot (torch's threads wait for a core): each point
records how many cores other processes used meanwhile (``_project.LoadMonitor``) and one taken
while they used over a quarter of a core is run again (``--retries``, default 1), keeping the
fastest; points still disturbed are flagged in the results.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import (  # noqa: E402
    BUSY_OTHER_CORES,
    ROOT,
    busy,
    default_prime,
    extra_draws,
    fresh_project,
    iteration_table,
    prime_stages,
    run_logged,
    split_iterations,
    split_params,
    train_command,
    train_log,
    write_json,
)

#: The nodes fitted: every prime_iteration stage but sample_prompts, evaluate_prm (its seconds fall into
#: "Kedro other") and evaluate_policy (off: ``prime.eval_every=0``).
NODES = prime_stages(without=("sample_prompts", "evaluate_prm", "evaluate_policy"))
AXES = {
    "prompts_per_step": (16, 32, 64, 128, 256),
    "samples_per_prompt": (2, 4, 8),
    "max_response_length": (32, 64, 128, 256),
}
AXIS_LABELS = {
    "prompts_per_step": "prompts per step",
    "samples_per_prompt": "samples per prompt",
    "max_response_length": "max response length",
}
DEFAULT = {"prompts_per_step": 64, "samples_per_prompt": 4, "max_response_length": 128}
DIAGONAL = ((128, 2, 128), (32, 8, 128), (128, 4, 32))
QUICK = ((16, 4, 128), (32, 4, 128), (64, 4, 128))
#: Below this budget nearly every response is cut off before its answer (the tiny world's responses
#: run ~50 tokens), every group scores 0 and the ``regenerate`` filter selects nothing
#: (NothingSelected after max_draws_per_iteration): such points train on B groups anyway (``fixed_batch``).
FIXED_BATCH_BELOW = 64
#: The tokens each node's work is proportional to, if it is linear (the x of its fit).
NODE_X = {
    "generate_rollouts": "generated_tokens",
    "verify_outcomes": "generated_tokens",
    "filter_prompts": "generated_tokens",
    "compute_process_rewards": "trained_tokens",
    "update_prm": "trained_tokens",
    "estimate_advantages": "trained_tokens",
    "update_policy": "trained_tokens",
    "iteration": "tokens_processed",
}
#: The squared-length term of each node's attention check (sum over sequences of length^2).
NODE_SQ = {
    "generate_rollouts": "generated_sq_tokens",
    "compute_process_rewards": "trained_sq_tokens",
    "update_prm": "trained_sq_tokens",
    "update_policy": "trained_sq_tokens",
    "iteration": "sq_tokens_processed",
}
#: A second fit for nodes whose work is per response rather than per token.
ALT_X = {"verify_outcomes": "distinct_responses"}


def grid(quick: bool = False, diagonal: bool = True) -> list[dict]:
    """The points: the default, each axis around it, then the diagonal ones; each with its
    ``axes`` (which axis series it belongs to: the default belongs to all three)."""
    key = ("prompts_per_step", "samples_per_prompt", "max_response_length")
    if quick:
        return [{**dict(zip(key, p)), "axes": ["prompts_per_step"]} for p in QUICK]
    points = [{**DEFAULT, "axes": list(AXES)}]
    for axis, values in AXES.items():
        for v in values:
            if v != DEFAULT[axis]:
                points.append({**DEFAULT, axis: v, "axes": [axis]})
    if diagonal:
        points += [{**dict(zip(key, p)), "axes": ["diagonal"]} for p in DIAGONAL]
    for p in points:
        if p["max_response_length"] < FIXED_BATCH_BELOW:
            p["extra"] = "prime.filter_mode=fixed_batch"
    return points


def parse_points(text: str) -> list[dict]:
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        p, n, length = (int(v) for v in item.lower().split("x"))
        out.append({"prompts_per_step": p, "samples_per_prompt": n, "max_response_length": length, "axes": ["custom"]})
    return out


def label(point: dict) -> str:
    return f"{point['prompts_per_step']}x{point['samples_per_prompt']}x{point['max_response_length']}"


def point_params(point: dict, user: str) -> str:
    """eval_every=0, then the user's params, then the point's (which win)."""
    items = ["prime.eval_every=0"] + split_params(user)
    items += [f"prime.{k}={point[k]}" for k in ("prompts_per_step", "samples_per_prompt", "max_response_length")]
    items += split_params(point.get("extra", ""))
    return ",".join(items)


def _param(params: str, name: str, default):
    """``prime.<name>`` as ``params`` sets it (read as ``eurus-prime train --params`` reads them), else ``default``."""
    from eurus_prime.runs.loop import parse_params

    return parse_params(params).get("prime", {}).get(name, default)


# --------------------------------------------------------------------------- measuring one point
def table_counts(project: Path, iteration: int, generation_batch_size: int) -> dict:
    """Token and row counts of one iteration, from its rollouts and filter report."""
    rollouts = iteration_table(project, iteration, "rollouts")
    report = iteration_table(project, iteration, "filter_report")
    resp = rollouts["response_length"].to_numpy(dtype=np.int64)
    prompt = np.array([len(x) for x in rollouts["prompt_ids"]], dtype=np.int64)
    order = np.argsort(prompt, kind="stable")  # engines.generation sorts by prompt length, then batches
    padded = sum(
        len(b) * int(resp[b].max())
        for b in np.array_split(order, range(generation_batch_size, len(order), generation_batch_size))
        if len(b)
    )
    selected = rollouts["prompt_id"].isin(set(report.loc[report["selected"], "prompt_id"])).to_numpy()
    seq = prompt + resp
    return {
        "generated_rollouts": int(len(rollouts)),
        "generated_tokens": int(resp.sum()),
        "generated_prompt_tokens": int(prompt.sum()),
        "generated_tokens_padded": int(padded),
        "generated_sq_tokens": int((seq**2 - prompt**2).sum()),
        "response_length_mean": round(float(resp.mean()), 2) if len(resp) else 0.0,
        "response_length_max": int(resp.max()) if len(resp) else 0,
        "truncated_share": round(float((rollouts["finish_reason"] == "length").mean()), 4),
        "distinct_responses": int(len(rollouts.drop_duplicates(["ability", "response", "ground_truth"]))),
        "groups_drawn": int(len(report)),
        "groups_selected": int(report["selected"].sum()),
        "trained_rollouts": int(selected.sum()),
        "trained_response_tokens": int(resp[selected].sum()),
        "trained_tokens": int(seq[selected].sum()),
        "trained_sq_tokens": int((seq[selected] ** 2).sum()),
    }


def measure(project: Path, iterations: int, generation_batch_size: int) -> dict:
    """Means over the measured iterations (1..iterations-1) of the train log and the tables."""
    rows = train_log(project)
    split = list(zip(rows, split_iterations(rows, NODES)))
    measured = [(r, part) for r, part in split if r["iteration"] >= 1] or split
    per_iter = []
    for r, part in measured:
        counts = table_counts(project, r["iteration"], generation_batch_size)
        per_iter.append(
            {
                "iteration": r["iteration"],
                **counts,
                "iteration_seconds": float(r["seconds"]),
                "node_seconds": {n: float(v) for n, v in part["nodes"].items()},
                "io_seconds": float(part["io_load"] + part["io_save"]),
                "kedro_other_seconds": float(part["kedro_other"]),
                "resamples": extra_draws(r),
                "peak_rss_mb": r.get("memory/peak_rss_mb"),
                "node_peak_rss_mb": {n: r[f"memory/{n}_peak_rss_mb"] for n in NODES if f"memory/{n}_peak_rss_mb" in r},
            }
        )
    out: dict = {"measured_iterations": [p["iteration"] for p in per_iter]}
    for key, value in per_iter[0].items():
        if key == "iteration":
            continue
        if isinstance(value, dict):
            out[key] = {k: float(np.mean([p[key].get(k, np.nan) for p in per_iter])) for k in value}
        elif value is None:
            out[key] = None
        else:
            out[key] = float(np.mean([p[key] for p in per_iter]))
    add_derived(out)
    return out


def add_derived(m: dict) -> dict:
    """The iteration's x: generated response tokens + trained prompt+response tokens."""
    m["tokens_processed"] = m["generated_tokens"] + m["trained_tokens"]
    m["sq_tokens_processed"] = m.get("generated_sq_tokens", 0) + m.get("trained_sq_tokens", 0)
    return m


def run_point(point: dict, user_params: str, iterations: int) -> dict:
    params = point_params(point, user_params)
    project = fresh_project(Path(tempfile.mkdtemp(prefix=f"eurus_prime_scaling_{label(point)}_")), with_sft_from=ROOT)
    cmd = train_command(project, iterations, params)
    code, wall, load = run_logged(cmd, project)
    if code:
        tail = "\n".join((project / "train.log").read_text().splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); end of {project / 'train.log'}:\n{tail}")
    gbs = _param(params, "generation_batch_size", default_prime()["generation_batch_size"])
    return {
        "label": label(point),
        **point,
        "params": params,
        "project": str(project),
        "run_seconds": round(wall, 1),
        "load": load.summary(),
        **measure(project, iterations, gbs),
    }


# --------------------------------------------------------------------------- analysis
def fit_linear(x, y) -> dict:
    """Least squares ``y = a + b x``: a, b, R^2 and the residuals (y - fit)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {
            "a": float(np.mean(y)) if len(y) else math.nan,
            "b": 0.0,
            "r2": math.nan,
            "residuals": [0.0] * len(x),
            "n": int(len(x)),
        }
    b, a = np.polyfit(x, y, 1)
    fit = a + b * x
    ss_res = float(((y - fit) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "a": float(a),
        "b": float(b),
        "r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        "residuals": (y - fit).tolist(),
        "n": int(len(x)),
    }


def fit_quadratic_term(x, sq, y) -> dict:
    """Least squares ``y = a + b x + c sq`` (sq: sum of squared sequence lengths): c, R^2,
    adjusted R^2 against the linear fit's."""
    x, sq, y = (np.asarray(v, dtype=float) for v in (x, sq, y))
    n = len(y)
    if n < 4:
        return {"c": math.nan, "r2": math.nan, "adj_r2": math.nan}
    design = np.column_stack([np.ones(n), x, sq])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    fit = design @ coef
    ss_res = float(((y - fit) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return {
        "a": float(coef[0]),
        "b": float(coef[1]),
        "c": float(coef[2]),
        "r2": r2,
        "adj_r2": 1 - (1 - r2) * (n - 1) / (n - 3) if n > 3 else math.nan,
    }


def _adj(r2: float, n: int, k: int) -> float:
    return 1 - (1 - r2) * (n - 1) / (n - k - 1) if n > k + 1 and not math.isnan(r2) else math.nan


def _spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def series(points: list[dict], name: str) -> np.ndarray:
    return np.array([p["iteration_seconds"] if name == "iteration" else p["node_seconds"][name] for p in points])


def analyse(points: list[dict]) -> dict:
    """Per node: the linear fit, the squared-length fit, the intercept share at the default point,
    residuals (relative) per point and their rank correlation with each axis; per axis: seconds
    per 1k tokens above the intercept at each point."""
    for p in points:
        add_derived(p)
    default = next((p for p in points if all(p[k] == v for k, v in DEFAULT.items())), points[0])
    out: dict = {"default_point": default["label"], "nodes": {}}
    for name in ("iteration",) + NODES:
        xkey = NODE_X[name]
        x = np.array([p[xkey] for p in points], dtype=float)
        y = series(points, name)
        lin = fit_linear(x, y)
        pred = lin["a"] + lin["b"] * x
        rel = [float(r / pr) if pr > 1e-9 else math.nan for r, pr in zip(lin["residuals"], pred)]
        entry = {
            "x": xkey,
            "a_seconds": lin["a"],
            "b_seconds_per_1k_tokens": 1000 * lin["b"],
            "r2": lin["r2"],
            "n": lin["n"],
            "residual_seconds": dict(zip([p["label"] for p in points], lin["residuals"])),
            "residual_share": dict(zip([p["label"] for p in points], rel)),
        }
        dflt_pred = lin["a"] + lin["b"] * default[xkey]
        entry["intercept_share_at_default"] = lin["a"] / dflt_pred if dflt_pred > 1e-9 else math.nan
        entry["seconds_at_default"] = float(series([default], name)[0])
        entry["residual_trend"] = {}
        for axis in AXES:
            members = [i for i, p in enumerate(points) if axis in p.get("axes", [])]
            if len(members) >= 3:
                entry["residual_trend"][axis] = _spearman(
                    [points[i][axis] for i in members], [lin["residuals"][i] for i in members]
                )
        if name in ALT_X:
            alt = fit_linear([p[ALT_X[name]] for p in points], y)
            entry["alt_fit"] = {
                "x": ALT_X[name],
                "a_seconds": alt["a"],
                "b_seconds_per_1k": 1000 * alt["b"],
                "r2": alt["r2"],
            }
        if name in NODE_SQ:
            sq = np.array([p.get(NODE_SQ[name], 0) for p in points], dtype=float)
            quad = fit_quadratic_term(x, sq, y)
            quad["linear_adj_r2"] = _adj(lin["r2"], len(y), 1)
            quad["share_at_default"] = (
                quad["c"] * default.get(NODE_SQ[name], 0) / entry["seconds_at_default"]
                if entry["seconds_at_default"] > 0 and not math.isnan(quad["c"])
                else math.nan
            )
            entry["squared_length_fit"] = quad
        out["nodes"][name] = entry
    # Per-token cost above the intercept, along each axis (does a token cost more in long sequences?).
    out["marginal_ms_per_token"] = {}
    for axis in list(AXES) + ["diagonal"]:
        members = (
            [p for p in points if axis in p.get("axes", [])]
            if axis != "diagonal"
            else [p for p in points if "diagonal" in p.get("axes", [])] + [default]
        )
        if not members:
            continue
        rows = []
        for p in sorted(members, key=lambda q: q[axis] if axis in AXES else q["tokens_processed"]):
            row = {"label": p["label"], "response_length_mean": p["response_length_mean"]}
            for name in ("iteration", "generate_rollouts", "update_policy"):
                e = out["nodes"][name]
                xv = p[e["x"]]
                yv = float(series([p], name)[0])
                row[name] = 1000 * (yv - e["a_seconds"]) / xv if xv else math.nan
            rows.append(row)
        out["marginal_ms_per_token"][axis] = rows
    seq = [p["trained_tokens"] / p["trained_rollouts"] for p in points if p.get("trained_rollouts")]
    out["trained_sequence_length_range"] = [min(seq), max(seq)] if seq else None
    out["conclusions"] = conclusions(out)
    return out


def conclusions(a: dict) -> list[str]:
    """Plain statements read off the fits (thresholds: R^2 >= 0.98 linear; |residual trend| >= 0.8
    with a positive sign: growing faster than the fit along that axis)."""
    lines = []
    for name, e in a["nodes"].items():
        if e["n"] < 3 or math.isnan(e["r2"]):
            continue
        if e["seconds_at_default"] < 0.05:
            lines.append(f"`{name}`: negligible ({e['seconds_at_default']:.3f} s at the default point).")
            continue
        verdict = "linear in tokens" if e["r2"] >= 0.98 else ("roughly linear" if e["r2"] >= 0.9 else "not linear")
        s = (
            f"`{name}`: {verdict} (R^2 {e['r2']:.3f} against {e['x'].replace('_', ' ')}), "
            f"{e['b_seconds_per_1k_tokens']:.3f} s per 1k tokens + {e['a_seconds']:.2f} s fixed "
            f"({100 * e['intercept_share_at_default']:.0f}% of it at the default point)"
        )
        trends = [
            f"{AXIS_LABELS[ax]} ({rho:+.2f})"
            for ax, rho in e["residual_trend"].items()
            if not math.isnan(rho) and abs(rho) >= 0.8
        ]
        if trends:
            s += "; residuals trend with " + ", ".join(trends)
        alt = e.get("alt_fit")
        if alt and not math.isnan(alt["r2"]):
            s += (
                f"; against {alt['x'].replace('_', ' ')} R^2 {alt['r2']:.3f} ({alt['b_seconds_per_1k']:.2f} s per "
                f"1k + {alt['a_seconds']:.2f} s)"
            )
        quad = e.get("squared_length_fit")
        if quad and not math.isnan(quad.get("c", math.nan)):
            gain = quad["adj_r2"] - quad["linear_adj_r2"]
            if quad["c"] > 0 and gain > 0.005:
                s += (
                    f"; a squared-length term improves the fit (adj. R^2 {quad['linear_adj_r2']:.3f} -> "
                    f"{quad['adj_r2']:.3f}{', with a negative linear term' if quad['b'] <= 0 else ''}): "
                    "longer sequences cost more per token, from attention or padding (see below)"
                )
            else:
                s += "; no squared-length (attention) term shows"
        lines.append(s + ".")
    rng = a.get("trained_sequence_length_range")
    if rng:
        lines.append(
            f"Trained sequences (prompt + response) average {rng[0]:.0f} to {rng[1]:.0f} tokens over these points: "
            "the tiny world's answers are short whatever the budget, so sequence length hardly varies, and a "
            "squared-length term cannot tell attention from padding (update_prm and update_policy pad each "
            "shuffled micro-batch to its longest row; the points cut at a short budget have equal lengths and "
            "no padding). Treat it as a hint, not a measurement of attention."
        )
    return lines


# --------------------------------------------------------------------------- output
def plot(points: list[dict], analysis: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [ax for ax in AXES if any(ax in p.get("axes", []) for p in points)]
    panels += [name for name in ("diagonal", "custom") if any(name in p.get("axes", []) for p in points)]
    panels = panels or ["all"]
    ncols = 2 if len(panels) > 2 else len(panels)
    nrows = -(-len(panels) // ncols)
    fig, grid_axs = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.8 * nrows), squeeze=False)
    axs = [list(grid_axs.flat)]
    for extra in axs[0][len(panels) :]:
        extra.set_visible(False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    default = analysis["default_point"]
    for ax, panel in zip(axs[0], panels):
        if panel in AXES:
            members = [p for p in points if panel in p.get("axes", [])]
            title = f"varying {AXIS_LABELS[panel]}"
        elif panel == "all":
            members, title = points, "all points"
        else:
            members = [p for p in points if panel in p.get("axes", []) or p["label"] == default]
            title = f"{panel} points (and the default)"
        key = panel if panel in AXES else "tokens_processed"
        members = sorted(members, key=lambda p: p[key])
        for i, name in enumerate(("iteration",) + NODES):
            e = analysis["nodes"][name]
            if name != "iteration" and e["seconds_at_default"] < 0.05:
                continue
            ordered = sorted(members, key=lambda p: p[e["x"]])  # a line along x, not along the axis value
            x = np.array([p[e["x"]] for p in ordered], dtype=float) / 1000
            y = series(ordered, name)
            style = {"color": "black", "lw": 2} if name == "iteration" else {"color": colors[i % len(colors)]}
            ax.plot(x, y, "o-", label=f"{name} (x: {e['x'].replace('_', ' ')})", **style)
            if not math.isnan(e["b_seconds_per_1k_tokens"]) and len(x):
                xs = np.linspace(0, x.max() * 1.05, 20)
                ax.plot(xs, e["a_seconds"] + e["b_seconds_per_1k_tokens"] * xs, "--", alpha=0.5, **style)
            if panel in AXES and name == "iteration":
                for p, xv, yv in zip(ordered, x, y):
                    ax.annotate(str(p[panel]), (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("thousand tokens processed by the node")
        ax.set_ylabel("seconds (iteration 1)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axs[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("PRIME iteration cost vs tokens (dashed: linear fit over all points)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(v, fmt="{:.2f}") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def render_markdown(result: dict) -> str:
    points, a = result["points"], result["analysis"]
    lines = [
        "# Scaling of a PRIME iteration (tiny world)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Each point: a fresh project copy, `eurus-prime train --iterations {result['iterations']}` with "
        f"`prime.eval_every=0` and the point's params (extra: `{result['params'] or 'none'}`); "
        "iteration 0 is warm-up, the rest measured. P prompts per step (2P drawn, oversample 2), N samples, "
        f"L = max response length. {len(points)} points in {result['total_seconds'] / 60:.1f} min.",
        "",
        "## Points",
        "",
        "| P x N x L | generated rollouts | generated tokens | mean / max response | truncated | "
        "padded decode tokens (hf batching) | trained rollouts | trained tokens | iteration s | "
        + " | ".join(f"`{n}` s" for n in NODES)
        + " | peak RSS MB | other work (cores) | runs |",
        "|---" * (12 + len(NODES)) + "|",
    ]
    for p in points:
        lines.append(
            f"| {p['label']}{' (' + p['extra'].replace('prime.', '') + ')' if p.get('extra') else ''} | "
            f"{p['generated_rollouts']:.0f} | {p['generated_tokens']:.0f} | "
            f"{p['response_length_mean']:.1f} / {p['response_length_max']:.0f} | {100 * p['truncated_share']:.0f}% | "
            f"{p['generated_tokens_padded']:.0f} | {p['trained_rollouts']:.0f} | {p['trained_tokens']:.0f} | "
            f"{p['iteration_seconds']:.2f} | "
            + " | ".join(f"{p['node_seconds'][n]:.2f}" for n in NODES)
            + f" | {_f(p.get('peak_rss_mb'), '{:.0f}')} | {_f((p.get('load') or {}).get('other_cores'), '{:.2f}')} "
            f"| {p.get('attempts', 1)} |"
        )
    noisy = [p["label"] for p in points if busy(p.get("load"))]
    if noisy:
        lines += [
            "",
            f"**Warning:** the machine was busy with other work during {', '.join(noisy)} (other "
            f"processes used more than {BUSY_OTHER_CORES} of a core on average, even after "
            "rerunning; the fastest run is kept): those wall times are inflated and the fits below "
            "are noisier than they should be. Rerun on a quiet machine for final numbers.",
        ]
    lines += [
        "",
        "## Fits: seconds = a + b x tokens",
        "",
        "x: generated tokens (sum of response lengths) for generation, verification and the filter; "
        "trained tokens (prompt + response of the selected groups) for the reward and update nodes; "
        "their sum for the iteration (the Kedro session's seconds, I/O included).",
        "",
        "| node | x | a (s) | b (s per 1k tokens) | R^2 | intercept share at default | "
        "residual trend (Spearman) per axis | adj. R^2: linear -> with a squared-length term |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in a["nodes"].items():
        trend = ", ".join(f"{AXIS_LABELS[k]} {_f(v, '{:+.2f}')}" for k, v in e["residual_trend"].items()) or "–"
        q = e.get("squared_length_fit")
        qs = (
            f"{_f(q['linear_adj_r2'], '{:.3f}')} -> {_f(q['adj_r2'], '{:.3f}')}"
            + (" (linear term < 0)" if q.get("b", 1) <= 0 else "")
            if q
            else "–"
        )
        lines.append(
            f"| `{name}` | {e['x'].replace('_', ' ')} | {_f(e['a_seconds'])} | "
            f"{_f(e['b_seconds_per_1k_tokens'], '{:.3f}')} | {_f(e['r2'], '{:.3f}')} | "
            f"{_f(100 * e['intercept_share_at_default'], '{:.0f}')}% | {trend} | {qs} |"
        )
        if e.get("alt_fit"):
            alt = e["alt_fit"]
            lines.append(
                f"| `{name}` | {alt['x'].replace('_', ' ')} (per 1k) | {_f(alt['a_seconds'])} | "
                f"{_f(alt['b_seconds_per_1k'], '{:.3f}')} | {_f(alt['r2'], '{:.3f}')} | | | |"
            )
    lines += [
        "",
        "Residuals (measured - fit, % of fit):",
        "",
        "| node | " + " | ".join(p["label"] for p in points) + " |",
        "|---" * (len(points) + 1) + "|",
    ]
    for name, e in a["nodes"].items():
        lines.append(
            f"| `{name}` | " + " | ".join(_f(100 * e["residual_share"][p["label"]], "{:+.0f}") for p in points) + " |"
        )
    lines += ["", "Marginal cost per token above the intercept (ms per token), along each axis:", ""]
    for axis, rows in a["marginal_ms_per_token"].items():
        lines.append(
            f"- {AXIS_LABELS.get(axis, axis)}: "
            + "; ".join(
                f"{r['label']} (mean response {r['response_length_mean']:.0f}): iteration {_f(r['iteration'], '{:.3f}')}, "
                f"generate {_f(r['generate_rollouts'], '{:.3f}')}, update_policy {_f(r['update_policy'], '{:.3f}')}"
                for r in rows
            )
        )
    lines += ["", "## Read off the fits", ""] + [f"- {c}" for c in a["conclusions"]]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    lines += ["", "![scaling](scaling.png)", ""]
    return "\n".join(lines)


def write(result: dict, out: Path) -> None:
    write_json(out.with_suffix(".json"), result, default=float)
    plot(result["points"], result["analysis"], out.with_suffix(".png"))
    out.with_suffix(".md").write_text(render_markdown(result))


NOTES = [
    "Response length in the tiny world is what the model writes (about 50 tokens on average at the SFT "
    "policy): `max_response_length` mostly changes truncation (the truncated share) and how long the HF "
    "engine's batches decode, so the fits use measured token counts, not L.",
    "Padded decode tokens: sum over `generation_batch_size` batches of prompt-length-sorted rollouts of batch "
    "size x longest response, the work of the `hf` engine (`generate` decodes a batch until its longest row "
    "ends); the `fast` engine drops finished rows from its batch, so it pays closer to the generated tokens.",
    "The accuracy filter decides how many groups are trained on (at most P): trained tokens are measured, "
    "not assumed; a small P can also need more draws of prompts (extra draws counted in `resamples`).",
    f"Points with a response budget under {FIXED_BATCH_BELOW} tokens run with `prime.filter_mode=fixed_batch`: "
    "nearly every response is cut off before its answer, every group scores 0, and the default `regenerate` "
    "filter would select nothing and stop (NothingSelected); `fixed_batch` trains on P groups anyway.",
    "One measured iteration per point on a shared 2-core machine: expect a few percent of noise.",
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 points (16, 32, 64 prompts per step), ~2-3 min")
    ap.add_argument("--no-diagonal", action="store_true", help="one axis at a time only")
    ap.add_argument("--points", default="", help="your own points instead of the grid: PxNxL,PxNxL,...")
    ap.add_argument("--iterations", type=int, default=2, help="per point; iteration 0 is warm-up (default 2)")
    ap.add_argument(
        "--params", default="", help="params for every point, as `kedro run --params` (e.g. prime.rollout_engine=fast)"
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=1,
        help="rerun a point measured while other work used the machine (over "
        f"{BUSY_OTHER_CORES} cores on average) up to this many times, keeping the fastest run "
        "(default 1)",
    )
    ap.add_argument("--from-json", type=Path, help="refit and replot the points of an earlier result; runs nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scaling")
    args = ap.parse_args(argv)
    command = " ".join(["python benchmarks/scaling.py", *(sys.argv[1:] if argv is None else argv)])
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["command"] = result["command"].strip()
        result["analysis"] = analyse(result["points"])
        write(result, args.out)
        print(render_markdown(result))
        return
    points = parse_points(args.points) if args.points else grid(args.quick, not args.no_diagonal)
    started = time.perf_counter()
    measured, failed = [], []
    for i, point in enumerate(points, 1):
        best = None
        for attempt in range(1 + max(0, args.retries)):
            print(
                f"[{i}/{len(points)}] {label(point)}{' (again: busy machine)' if attempt else ''} ...",
                end=" ",
                flush=True,
            )
            try:
                m = run_point(point, args.params, args.iterations)
            except RuntimeError as err:
                print("FAILED")
                print(err, file=sys.stderr)
                failed.append({"label": label(point), "error": str(err)[-2000:]})
                break
            m["attempts"] = attempt + 1
            print(
                f"{m['iteration_seconds']:.1f} s/iteration, {m['generated_rollouts']:.0f} rollouts, "
                f"{m['generated_tokens']:.0f} generated / {m['trained_tokens']:.0f} trained tokens "
                f"({m['run_seconds']:.0f} s; other work used {_f(m['load'].get('other_cores'), '{:.2f}')} cores, "
                f"load average {m['load']['load_mean']:.1f})",
                flush=True,
            )
            if best is None or m["iteration_seconds"] < best["iteration_seconds"]:
                best = m  # other work only ever slows a run down: the fastest is the least disturbed
            if not busy(m.get("load")):
                break
        if best is not None:
            best["attempts"] = m["attempts"]
            measured.append(best)
    if not measured:
        raise SystemExit("no point ran")
    result = {
        "command": command,
        "iterations": args.iterations,
        "params": args.params,
        "total_seconds": round(time.perf_counter() - started, 1),
        "points": measured,
        "failed": failed,
        "notes": NOTES + [f"failed points: {', '.join(f['label'] for f in failed)}"] * bool(failed),
    }
    result["analysis"] = analyse(measured)
    write(result, args.out)
    print(render_markdown(result))


if __name__ == "__main__":
    main()
