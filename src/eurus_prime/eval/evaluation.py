"""Evaluation: greedy pass@1 of a checkpoint on a table of prompts (Eurus-2-RL-Data schema), and
the `evaluation` pipeline's comparison of several checkpoints on named suites, greedy and best-of-N
(majority vote, ranking by the implicit PRM), as a table, a Markdown report and a chart."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eurus_prime.engines import spmd
from eurus_prime.engines.rollout import ENGINES, ProgressFn, generate
from eurus_prime.tasks.prompting import render_prompt
from eurus_prime.verifiers import verify_all, verify_triples

log = logging.getLogger(__name__)


def _check_engine(block: str, engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"{block}.engine = {engine!r} is invalid: valid values are {list(ENGINES)}")


@dataclass(frozen=True)
class EvalConfig:
    """How a checkpoint is evaluated."""

    max_new_tokens: int = 160
    """Response budget per prompt."""
    batch_size: int = 128
    """Prompts per generation batch."""
    temperature: float = 0.0
    """0 is greedy pass@1; > 0 samples."""
    max_items: int | None = None
    """Evaluate only the first N prompts (None: all)."""
    seed: int = 0
    """Seed of sampling (unused when greedy)."""
    engine: str = "fast"
    """Generation engine: ``fast``, ``hf`` or ``vllm`` (``eurus_prime.engines.rollout.base.ENGINES``)."""

    def __post_init__(self) -> None:
        _check_engine("evaluation", self.engine)
        if self.max_new_tokens < 1:
            raise ValueError(f"evaluation.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"evaluation.batch_size must be >= 1, got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"evaluation.temperature must be >= 0, got {self.temperature}")


def evaluate_prompts(
    model, tokenizer, prompts: pd.DataFrame, cfg: EvalConfig, on_progress: ProgressFn | None = None
) -> pd.DataFrame:
    """Generate one response per prompt and grade it.

    Returns:
        One row per prompt: ``data_source``, ``ability``, ``index``, ``response``,
        ``finish_reason``, ``response_length`` and the verdict columns (``score``, ``correct``,
        ``reason``, ``extracted``, ``error``, ``isolation``).
    """
    rows = prompts if cfg.max_items is None else prompts.head(cfg.max_items)
    texts = [render_prompt(tokenizer, list(p)) for p in rows["prompt"]]
    gens = generate(
        model,
        tokenizer,
        texts,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        engine=cfg.engine,
        on_progress=on_progress,
    )
    # In an SPMD campaign every rank generates the whole set (the same batches, so the same greedy
    # tokens) and grades its block of it (engines/spmd.py); in one process, one verify_all call.
    triples = list(zip(rows["ability"], [g.text for g in gens], [rm["ground_truth"] for rm in rows["reward_model"]]))
    verdicts = spmd.map_shards(triples, verify_triples)
    return pd.DataFrame(
        {
            "data_source": rows["data_source"].to_numpy(),
            "ability": rows["ability"].to_numpy(),
            "index": [e["index"] for e in rows["extra_info"]],
            "response": [g.text for g in gens],
            "finish_reason": [g.finish_reason for g in gens],
            "response_length": [len(g.token_ids) for g in gens],
            **pd.DataFrame([v.as_row() for v in verdicts]).to_dict("list"),
        }
    )


#: The ``heldout`` group of an accuracy report: a data source with this in its name is a novel
#: structure (held out of training); the others are in-distribution.
NOVEL_MARK = "_novel"


def accuracy_report(items: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per data source, per ability and overall (the ``group`` column says which); where
    some data sources are novel (``NOVEL_MARK``), also per ``heldout`` kind: ``in_distribution``
    and ``novel``."""

    def block(group: str, key: pd.Series) -> pd.DataFrame:
        g = items.groupby(key)
        return pd.DataFrame(
            {
                "group": group,
                "name": list(g.groups),
                "n": g.size().to_numpy(),
                "accuracy": g["correct"].mean().to_numpy(),
                "mean_score": g["score"].mean().to_numpy(),
            }
        )

    overall = pd.Series("all", index=items.index)
    blocks = [block("all", overall), block("ability", items["ability"])]
    novel = items["data_source"].astype(str).str.contains(NOVEL_MARK, regex=False)
    if novel.any():
        blocks.append(block("heldout", novel.map({True: "novel", False: "in_distribution"})))
    blocks.append(block("data_source", items["data_source"]))
    return pd.concat(blocks, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Several checkpoints on named suites, greedy and (optionally) best-of-N

#: Suites that are the project's own held-out splits (``prompts_test``, ``prompts_val``).
SPLIT_SUITES = ("test", "val")
GREEDY = "greedy"


@dataclass(frozen=True)
class SuiteEvalConfig:
    """The ``evaluation`` pipeline: which checkpoints, on which suites, by which methods."""

    checkpoints: tuple[str, ...] = ("sft", "latest")
    """``sft``, ``latest``, ``iter:N``, a Hugging Face folder or hub id (``eurus_prime.eval.checkpoints``)."""
    suites: tuple = ("test",)
    """``test`` / ``val`` (the held-out splits) or benchmark names / ``{name, path, hub_id, split, limit}``
    (``eurus_prime.tasks.suites``)."""
    max_items: int | None = 500
    """First N items of each suite (None: all)."""
    max_new_tokens: int = 128
    batch_size: int = 128
    system_prompt: str = "tiny"
    """System prompt for benchmark suites (the splits carry their own): ``tiny`` or ``eurus2``."""
    best_of: int = 0
    """N > 0 also samples N answers per item and reports ``sample@1`` (mean), ``majority@N``,
    ``prm@N`` (best by the implicit PRM) and ``pass@N`` (any correct: the oracle bound)."""
    prm: str = "prm:latest"
    reference: str = "sft"
    temperature: float = 1.0
    """Sampling temperature of the best-of-N candidates."""
    beta: float = 0.05
    micro_batch: int = 32
    seed: int = 0
    engine: str = "fast"
    """Generation engine: ``fast``, ``hf`` or ``vllm`` (``eurus_prime.engines.rollout.base.ENGINES``)."""

    def __post_init__(self) -> None:
        def bad(field_: str, why: str) -> ValueError:
            return ValueError(f"evaluation_suites.{field_} {why}")

        _check_engine("evaluation_suites", self.engine)
        if not self.checkpoints:
            raise bad("checkpoints", "is empty: name at least one (e.g. [sft, latest])")
        if not self.suites:
            raise bad("suites", "is empty: name at least one (e.g. [test])")
        if self.max_items is not None and self.max_items < 1:
            raise bad("max_items", f"must be >= 1 or null, got {self.max_items}")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.micro_batch < 1:
            raise bad("max_new_tokens/batch_size/micro_batch", "must be >= 1")
        if self.best_of < 0:
            raise bad("best_of", f"must be >= 0, got {self.best_of}")
        if self.best_of and (self.temperature <= 0 or self.beta <= 0):
            raise bad("temperature/beta", "must be > 0 for best-of-N")
        object.__setattr__(self, "checkpoints", tuple(self.checkpoints))
        object.__setattr__(self, "suites", tuple(self.suites))

    @property
    def methods(self) -> list[str]:
        n = self.best_of
        return [GREEDY] + (["sample@1", f"majority@{n}", f"prm@{n}", f"pass@{n}"] if n else [])


def suite_name(spec) -> str:
    return spec if isinstance(spec, str) else str(spec["name"])


def _verdict_frame(verdicts) -> pd.DataFrame:
    return pd.DataFrame([v.as_row() for v in verdicts])[["score", "correct", "reason", "extracted"]]


def best_of_n_items(
    policy, prm, reference, prompts: pd.DataFrame, cfg: SuiteEvalConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample ``cfg.best_of`` answers per prompt, grade them all, and pick by majority and by PRM.

    Returns (per item and method: the chosen response and its verdict; per sample: its verdict,
    answer key, PRM score and whether majority / PRM chose it).
    """
    from eurus_prime.eval.inference import answer_key, best_of_n, majority_index

    n = cfg.best_of
    texts = [render_prompt(policy.tokenizer, list(p)) for p in prompts["prompt"]]
    abilities = prompts["ability"].tolist()
    cands = best_of_n(
        policy,
        prm,
        reference,
        texts,
        abilities,
        n=n,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        beta=cfg.beta,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        micro_batch=cfg.micro_batch,
        engine=cfg.engine,
    )
    truths = [rm["ground_truth"] for rm in prompts["reward_model"]]
    flat = [c for group in cands for c in group]
    verdicts = _verdict_frame(
        verify_all(
            [a for a in abilities for _ in range(n)],
            [c.generation.text for c in flat],
            [t for t in truths for _ in range(n)],
        )
    )
    samples = pd.DataFrame(
        {
            "row": np.repeat(np.arange(len(prompts)), n),
            "sample_idx": np.tile(np.arange(n), len(prompts)),
            "response": [c.generation.text for c in flat],
            "response_length": [len(c.generation.token_ids) for c in flat],
            "finish_reason": [c.generation.finish_reason for c in flat],
            "answer_key": [answer_key(c.parsed.answer, a) for c, a in zip(flat, np.repeat(abilities, n))],
            "prm_score": [c.score for c in flat],
            **verdicts.to_dict("list"),
        }
    )
    items = []
    samples["majority_choice"] = False
    samples["prm_choice"] = False
    for row, group in samples.groupby("row", sort=True):
        scores = group["prm_score"].to_numpy()
        maj = group.index[majority_index(list(group["answer_key"]), tie_break=list(scores))]
        best = group.index[int(np.argmax(scores))]
        samples.loc[maj, "majority_choice"] = True
        samples.loc[best, "prm_choice"] = True
        chosen = {f"majority@{n}": samples.loc[maj], f"prm@{n}": samples.loc[best]}
        for method, s in chosen.items():
            items.append(
                {
                    "row": row,
                    "method": method,
                    "response": s["response"],
                    "score": s["score"],
                    "correct": bool(s["correct"]),
                    "reason": s["reason"],
                    "extracted": s["extracted"],
                    "prm_score": s["prm_score"],
                }
            )
        first = group.iloc[0]
        items.append(
            {
                "row": row,
                "method": "sample@1",
                "response": first["response"],
                "score": float(group["score"].mean()),
                "correct": float(group["correct"].mean()),
                "reason": "mean",
                "extracted": None,
                "prm_score": float(scores.mean()),
            }
        )
        items.append(
            {
                "row": row,
                "method": f"pass@{n}",
                "response": None,
                "score": float(group["score"].max()),
                "correct": bool(group["correct"].any()),
                "reason": "any",
                "extracted": None,
                "prm_score": float(scores.max()),
            }
        )
    rank = {m: i for i, m in enumerate(cfg.methods)}
    frame = pd.DataFrame(items)
    frame = frame.iloc[np.lexsort((frame["row"].to_numpy(), frame["method"].map(rank).to_numpy()))]
    return frame.reset_index(drop=True), samples


def evaluate_suites(prompts: pd.DataFrame, cfg: SuiteEvalConfig, project) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every configured checkpoint on every suite in ``prompts`` (a ``suite`` column), by every method.

    Returns ``items`` (one row per checkpoint, suite item and method; ``correct`` is a share for
    ``sample@1``) and ``samples`` (one row per best-of-N sample; empty when ``best_of`` is 0).
    """
    from eurus_prime.eval.checkpoints import load_each, resolve

    refs = [resolve(spec, project) for spec in cfg.checkpoints]
    scorers: dict[str, object] = {}  # the PRM and its reference, held for the whole run
    prm = reference = None
    if cfg.best_of:
        scoring = [resolve(cfg.prm, project), resolve(cfg.reference, project)]
        prm, reference = load_each(scoring)
        scorers = {scoring[0].source: prm, scoring[1].source: reference}
    keys = pd.DataFrame(
        {
            "suite": prompts["suite"].to_numpy(),
            "data_source": prompts["data_source"].to_numpy(),
            "ability": prompts["ability"].to_numpy(),
            "index": [e["index"] for e in prompts["extra_info"]],
        }
    )
    items, samples = [], []
    for ref in refs:
        ckpt = scorers.get(ref.source) or ref.load()  # evaluating the reference (sft): loaded once
        log.info("evaluation: %s (%s) on %d items", ref.label, ckpt.version, len(prompts))
        greedy = evaluate_prompts(
            ckpt.model,
            ckpt.tokenizer,
            prompts,
            EvalConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, engine=cfg.engine),
        )
        items.append(
            keys.assign(
                checkpoint=ref.label,
                version=ckpt.version,
                method=GREEDY,
                response=greedy["response"].to_numpy(),
                score=greedy["score"].to_numpy(),
                correct=greedy["correct"].astype(float).to_numpy(),
                reason=greedy["reason"].to_numpy(),
                extracted=greedy["extracted"].to_numpy(),
                prm_score=np.nan,
            )
        )
        if cfg.best_of:
            chosen, drawn = best_of_n_items(ckpt, prm, reference, prompts, cfg)
            meta = keys.iloc[chosen["row"]].reset_index(drop=True)
            items.append(
                pd.concat([meta, chosen.drop(columns="row")], axis=1).assign(checkpoint=ref.label, version=ckpt.version)
            )
            meta = keys.iloc[drawn["row"]].reset_index(drop=True)
            samples.append(
                pd.concat([meta, drawn.drop(columns="row")], axis=1).assign(checkpoint=ref.label, version=ckpt.version)
            )
    order = ["checkpoint", "version", "suite", "data_source", "ability", "index", "method"]
    items_frame = pd.concat(items, ignore_index=True)
    items_frame["correct"] = items_frame["correct"].astype(float)
    items_frame = items_frame[order + [c for c in items_frame.columns if c not in order]]
    samples_frame = (
        pd.concat(samples, ignore_index=True)
        if samples
        else pd.DataFrame(
            {c: [] for c in ["checkpoint", "version", "suite", "data_source", "ability", "index", "sample_idx"]}
        )
    )
    return items_frame, samples_frame


def suite_table(items: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (checkpoint, suite, method, data_source), with ``data_source = "all"`` per suite.

    Checkpoints and methods keep the order in which they were evaluated.
    """

    def summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        g = frame.groupby(by, sort=False)
        return g.agg(n=("correct", "size"), accuracy=("correct", "mean"), mean_score=("score", "mean")).reset_index()

    keys = ["checkpoint", "suite", "method"]
    whole = summary(items, keys).assign(data_source="all")
    parts = summary(items, keys + ["data_source"])
    table = pd.concat([whole, parts], ignore_index=True)
    rank = {name: i for i, name in enumerate(dict.fromkeys(items["checkpoint"]))}
    mrank = {name: i for i, name in enumerate(dict.fromkeys(items["method"]))}
    table["_c"], table["_m"] = table["checkpoint"].map(rank), table["method"].map(mrank)
    table["_a"] = table["data_source"] != "all"
    table = table.sort_values(["suite", "_a", "data_source", "_c", "_m"], kind="stable")
    return table.drop(columns=["_c", "_m", "_a"]).reset_index(drop=True)[
        ["checkpoint", "suite", "data_source", "method", "n", "accuracy", "mean_score"]
    ]


def markdown_report(table: pd.DataFrame, title: str = "Evaluation") -> str:
    """Per suite: a table of checkpoints x methods on the whole suite, then greedy accuracy per data
    source with a column per checkpoint and the change from the first checkpoint to the last."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"# {title}", ""]
    for suite, frame in table.groupby("suite", sort=False):
        whole = frame[frame["data_source"] == "all"]
        methods = list(dict.fromkeys(whole["method"]))
        checkpoints = list(dict.fromkeys(whole["checkpoint"]))
        n = int(whole["n"].iloc[0])
        lines += [
            f"## {suite} ({n} items)",
            "",
            "| checkpoint | " + " | ".join(methods) + " |",
            "|---|" + "---:|" * len(methods),
        ]
        for ckpt in checkpoints:
            acc = dict(zip(whole[whole.checkpoint == ckpt]["method"], whole[whole.checkpoint == ckpt]["accuracy"]))
            lines.append(f"| {ckpt} | " + " | ".join(pct(acc[m]) if m in acc else "" for m in methods) + " |")
        greedy = frame[(frame["method"] == GREEDY)]
        delta = len(checkpoints) > 1
        lines += [
            "",
            "Greedy pass@1 by data source:",
            "",
            "| data source | n | "
            + " | ".join(checkpoints)
            + (f" | {checkpoints[-1]} - {checkpoints[0]} |" if delta else " |"),
            "|---|---:|" + "---:|" * (len(checkpoints) + delta),
        ]
        for source, rows in greedy.groupby("data_source", sort=False):
            acc = dict(zip(rows["checkpoint"], rows["accuracy"]))
            cells = [pct(acc[c]) if c in acc else "" for c in checkpoints]
            if delta:
                change = acc.get(checkpoints[-1], np.nan) - acc.get(checkpoints[0], np.nan)
                cells.append("" if np.isnan(change) else f"{100 * change:+.1f} pts")
            lines.append(f"| {source} | {int(rows['n'].iloc[0])} | " + " | ".join(cells) + " |")
        lines.append("")
    if table["method"].ne(GREEDY).any():
        lines += [
            "`greedy`: pass@1 at temperature 0. Best-of-N: `sample@1` is the mean accuracy of the N samples, "
            "`majority@N` the most common final answer, `prm@N` the answer the implicit PRM scores highest, "
            "`pass@N` whether any sample is correct (the bound a perfect ranker would reach).",
            "",
        ]
    return "\n".join(lines)


def chart_png(table: pd.DataFrame, title: str = "Held-out accuracy") -> bytes:
    """A bar chart (PNG bytes): a panel per suite, a group of bars per method, a bar (one colour)
    per checkpoint, so "SFT vs iteration N" reads across each group."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    whole = table[table["data_source"] == "all"]
    suites = list(dict.fromkeys(whole["suite"]))
    methods = list(dict.fromkeys(whole["method"]))
    checkpoints = list(dict.fromkeys(whole["checkpoint"]))
    width = 0.8 / len(checkpoints)
    fig, axes = plt.subplots(
        1,
        len(suites),
        figsize=(1.0 + len(suites) * (1.2 + 0.45 * len(methods) * len(checkpoints)), 3.8),
        dpi=110,
        squeeze=False,
        sharey=True,
    )
    for ax, suite in zip(axes[0], suites):
        rows = whole[whole["suite"] == suite]
        for k, ckpt in enumerate(checkpoints):
            acc = dict(zip(rows[rows.checkpoint == ckpt]["method"], rows[rows.checkpoint == ckpt]["accuracy"]))
            xs = np.arange(len(methods)) + (k - (len(checkpoints) - 1) / 2) * width
            bars = ax.bar(xs, [100 * acc.get(m, np.nan) for m in methods], width * 0.95, label=ckpt, color=f"C{k}")
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xticks(np.arange(len(methods)), methods, fontsize=8)
        ax.set_title(f"{suite} ({int(rows['n'].iloc[0])} items)", fontsize=9)
        ax.set_ylim(0, 105)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
