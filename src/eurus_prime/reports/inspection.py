"""Look at what one PRIME iteration did, rollout by rollout and token by token.

PRIME's implicit PRM scores every response token (``process_rewards.implicit_reward`` =
beta x (log pi_prm - log pi_ref)); the numbers only mean something next to the text they score.
This module joins an iteration's tables into one row per rollout (``rollout_frame``) and renders
rollouts with each token's value as a background colour, red < 0 < green: in the terminal
(``format_rollout``), as a self-contained HTML page (``html_report``, ``write_html_report``) and,
through ``rollout_cards``, in a notebook (``notebooks/inspect_rollouts.ipynb``).

Everything here is plain functions of DataFrames and a tokenizer; ``_catalog`` is the one place
that opens a Kedro session (``load_iteration``, ``load_rollouts``, ``load_tokenizer``). Column reference:
``docs/tables.md``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eurus_prime.datasets.atomic import write_file_atomically
from eurus_prime.runs.layout import iter_dir
from eurus_prime.runs.session import open_context
from eurus_prime.tasks.steps import span_tokens
from eurus_prime.tasks.tokens import token_pieces

#: The per-iteration tables ``load_iteration`` reads by default (docs/tables.md).
TABLES = (
    "drawn_prompts",
    "rollouts",
    "outcomes",
    "filter_report",
    "process_rewards",
    "prm_rewards",
    "advantages",
    "prm_stats",
    "ppo_stats",
    "eval_items",
    "eval_report",
)
#: The tables ``rollout_frame`` joins (``drawn_prompts`` only for the question text).
ROLLOUT_TABLES = (
    "drawn_prompts",
    "rollouts",
    "outcomes",
    "filter_report",
    "process_rewards",
    "prm_rewards",
    "advantages",
)
#: The columns that join the per-rollout tables.
KEY = ["prompt_id", "sample_idx"]
#: Per-token columns of ``rollout_frame`` (None on rollouts of unselected prompt groups).
TOKEN_COLUMNS = ("implicit_reward", "token_rewards", "advantages")

# A diverging scale: white at 0, red for negative values, green for positive ones.
_WHITE = (255, 255, 255)
_NEGATIVE = (214, 39, 40)
_POSITIVE = (44, 160, 44)
_BLACK = (31, 35, 40)
_ANSI_RESET = "\x1b[0m"
_NEWLINE_MARK = "\u21b5"  # a visible mark where a token ends a line


# ------------------------------------------------------------------------------------- loading


@contextmanager
def _catalog(project: Path, env: str | None, iteration: int | None = None) -> Iterator[Any]:
    """The project's Kedro catalog, iteration-scoped paths resolved for ``iteration``."""
    params = {} if iteration is None else {"iteration": int(iteration)}
    with open_context(project, env, params, in_project=True) as context:
        yield context.catalog


def load_iteration(
    project: Path, iteration: int, env: str | None = None, tables: Sequence[str] = TABLES
) -> dict[str, pd.DataFrame]:
    """The latest version of each of ``tables`` for ``iteration``, loaded through the catalog.

    Raises ``FileNotFoundError`` naming the iteration, the missing tables and the command that
    writes them, rather than Kedro's per-dataset error for the first one it meets."""
    with _catalog(project, env, iteration) as catalog:
        return _load_tables(catalog, project, iteration, tables)


def _load_tables(catalog: Any, project: Path, iteration: int, tables: Sequence[str]) -> dict[str, pd.DataFrame]:
    missing = [name for name in tables if not catalog.exists(name)]
    if missing:
        raise FileNotFoundError(
            f"iteration {iteration} of {project} has no {', '.join(missing)} table"
            f"{'s' if len(missing) > 1 else ''} yet: run `eurus-prime train` (runs the iterations in "
            f"order) or `kedro run --pipelines=prime_iteration "
            f"--params=iteration={iteration}`"
        )
    return {name: catalog.load(name) for name in tables}


def load_rollouts(project: Path, iteration: int, env: str | None = None) -> tuple[pd.DataFrame, Any]:
    """``rollout_frame`` of ``iteration`` and the tokenizer that decodes it, from one Kedro session
    (what the terminal view and the HTML report need, and no more)."""
    with _catalog(project, env, iteration) as catalog:
        tables = _load_tables(catalog, project, iteration, ROLLOUT_TABLES)
        # The sampler's own tokenizer (the iteration's policy_in), not the tiny world's `tokenizer`
        # dataset, which a project on another model (SmolLM2, Eurus-2-7B) does not have.
        return rollout_frame(tables), catalog["policy_in"].load_tokenizer()


def load_tokenizer(project: Path, env: str | None = None) -> Any:
    """The tokenizer of the project's model (the reference's, i.e. the SFT model's), which decodes
    ``response_ids``."""
    with _catalog(project, env) as catalog:
        return catalog["reference_model"].load_tokenizer()


# ------------------------------------------------------------------------------------- joining


def _last_user_message(messages: Sequence[Mapping[str, str]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else ""


def _none_where_missing(column: pd.Series) -> pd.Series:
    """An object column whose missing cells (NaN from a left join) are None."""
    column = column.astype(object)
    return column.where(column.notna(), None)


def rollout_frame(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per rollout, in ``rollouts`` order: the rollout, its outcome (``score``,
    ``correct``, ``reason``, ...), its prompt group's filter result (``status``, ``selected``,
    ``prompt_accuracy``), ``question`` (the last user message; the rendered ``prompt_text`` when
    ``drawn_prompts`` is not among ``tables``) and, for selected rollouts, ``sequence_score`` and
    the per-token ``implicit_reward``, ``token_rewards`` and ``advantages``. Rollouts that did not
    train have None there (NaN for ``sequence_score``). Filter it with ``DataFrame.query``, e.g.
    ``"ability == 'math' and correct == False"``."""
    rollouts = tables["rollouts"]
    frame = rollouts.merge(
        tables["outcomes"].drop(columns=["data_source", "ability", "draw"], errors="ignore"),
        on=KEY,
        how="left",
        validate="one_to_one",
    )
    report = tables["filter_report"][["prompt_id", "status", "selected", "accuracy"]]
    frame = frame.merge(
        report.rename(columns={"accuracy": "prompt_accuracy"}), on="prompt_id", how="left", validate="many_to_one"
    )
    if "drawn_prompts" in tables:
        drawn = tables["drawn_prompts"]
        questions = pd.DataFrame(
            {"prompt_id": drawn["prompt_id"], "question": [_last_user_message(list(p)) for p in drawn["prompt"]]}
        )
        frame = frame.merge(questions, on="prompt_id", how="left", validate="many_to_one")
    else:
        frame["question"] = frame["prompt_text"]
    for table, columns in (
        ("process_rewards", ["implicit_reward", "sequence_score"]),
        ("prm_rewards", ["token_rewards"]),
        ("advantages", ["advantages"]),
    ):
        frame = frame.merge(tables[table][KEY + columns], on=KEY, how="left", validate="one_to_one")
    for column in TOKEN_COLUMNS:
        frame[column] = _none_where_missing(frame[column])
    return frame


def accuracy_by_source(frame: pd.DataFrame) -> pd.DataFrame:
    """Per data source: rollouts, accuracy (share correct), mean score, selected rollouts."""
    grouped = frame.assign(trained=frame["implicit_reward"].notna()).groupby(["data_source", "ability"], sort=True)
    return pd.DataFrame(
        {
            "rollouts": grouped.size(),
            "accuracy": grouped["correct"].mean(),
            "mean_score": grouped["score"].mean(),
            "selected": grouped["trained"].sum(),
        }
    ).reset_index()


def filter_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """How the accuracy-band filter treated the prompt groups: prompts per ``status``."""
    prompts = frame.drop_duplicates("prompt_id")
    counts = prompts["status"].value_counts()
    return pd.DataFrame(
        {"status": counts.index, "prompts": counts.to_numpy(), "share": counts.to_numpy() / len(prompts)}
    )


# -------------------------------------------------------------------------------------- tokens


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def _scale(values: Sequence[float | None], scale: float | None) -> float:
    """``scale``, or the largest |value| (1.0 when every value is 0 or missing)."""
    if scale is None:
        scale = max((abs(float(v)) for v in values if _finite(v)), default=0.0)
    return float(scale) if scale and scale > 0 else 1.0


def _colors(value: float | None, scale: float) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """(background, text) colours of ``value`` on the diverging scale: white at 0, full red at
    -scale, full green at +scale (clipped beyond), white text once the background is dark. None
    for a missing or non-finite value, or one too small to tint the background at all."""
    if not _finite(value):
        return None
    t = min(abs(float(value)) / scale, 1.0)
    end = _POSITIVE if value > 0 else _NEGATIVE
    background = tuple(round(w + (e - w) * t) for w, e in zip(_WHITE, end))
    if background == _WHITE:
        return None
    return background, (_WHITE if t > 0.6 else _BLACK)


def _ansi_color(rgb: tuple[int, int, int], truecolor: bool, background: bool) -> str:
    layer = 48 if background else 38
    if truecolor:
        return "\x1b[{};2;{};{};{}m".format(layer, *rgb)
    r, g, b = (round(c / 255 * 5) for c in rgb)  # the 6x6x6 cube of the 256-colour palette
    return f"\x1b[{layer};5;{16 + 36 * r + 6 * g + b}m"


def _check_aligned(pieces: Sequence[str], values: Sequence[float | None]) -> None:
    if len(pieces) != len(values):
        raise ValueError(f"{len(pieces)} token pieces but {len(values)} values")


def ansi_tokens(
    pieces: Sequence[str], values: Sequence[float | None], scale: float | None = None, *, truecolor: bool = True
) -> str:
    """Terminal text of ``pieces`` with each token's background coloured by its value on a
    diverging scale symmetric around 0 (red negative, green positive, ``scale`` = full colour,
    default the largest |value|). A token that ends a line shows a coloured ``↵`` before the
    newline, so the colour never bleeds to the edge of the terminal; a None value, or one too
    small to tint the background, prints plain (readable on dark and light terminals alike).
    ``truecolor=False`` uses the 256-colour palette for terminals without 24-bit colour."""
    _check_aligned(pieces, values)
    scale = _scale(values, scale)
    out = []
    for piece, value in zip(pieces, values):
        colors = _colors(value, scale)
        if colors is None:
            out.append(piece)
            continue
        style = _ansi_color(colors[0], truecolor, True) + _ansi_color(colors[1], truecolor, False)
        lines = piece.split("\n")
        for j, line in enumerate(lines):
            if j:
                out.append(f"{style}{_NEWLINE_MARK}{_ANSI_RESET}\n")
            if line:
                out.append(f"{style}{line}{_ANSI_RESET}")
    return "".join(out)


def _legend_values(scale: float) -> tuple[list[str], list[float]]:
    steps = [-1.0, -0.5, 0.0, 0.5, 1.0]
    return [f" {s * scale:+.3g} " if s else " 0 " for s in steps], [s * scale for s in steps]


def _token_values(row: pd.Series, column: str) -> list[float] | None:
    """The row's per-token values of ``column`` as floats, or None when it has none."""
    values = row.get(column)
    if values is None or (isinstance(values, float) and math.isnan(values)):
        return None
    return [float(v) for v in np.asarray(values)]


def _fmt(value: Any, spec: str = ".4g") -> str:
    """A number for a header, '-' when missing."""
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return "-"
    return format(value, spec) if isinstance(value, (int, float, np.number)) else str(value)


def _clip(value: Any, width: int = 100) -> str:
    """``value`` on one line, cut to ``width`` characters."""
    text = "-" if value is None else str(value).replace("\n", _NEWLINE_MARK)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _header_fields(row: pd.Series) -> list[list[tuple[str, str]]]:
    """The (label, text) metadata shown above a rollout, terminal and HTML alike, in lines:
    which rollout, how it scored and trained, what was graded against what."""
    return [
        [
            ("iteration", _fmt(row.get("iteration"), "d")),
            ("prompt", str(row["prompt_id"])),
            ("sample", _fmt(row["sample_idx"], "d")),
            ("source", f"{row['data_source']} ({row['ability']})"),
        ],
        [
            ("score", _fmt(row.get("score"), ".3g")),
            ("correct", str(bool(row.get("correct")))),
            ("reason", str(row.get("reason"))),
            ("filter", f"{row.get('status')} (prompt accuracy {_fmt(row.get('prompt_accuracy'), '.2f')})"),
            ("length", f"{_fmt(row['response_length'], 'd')} tokens ({row.get('finish_reason')})"),
            ("sequence score", _fmt(row.get("sequence_score"), "+.4g")),
        ],
        [("extracted", _clip(row.get("extracted"))), ("ground truth", _clip(row.get("ground_truth")))],
        *([[("first wrong step", _first_wrong(row))]] if _labelled(row) else []),
    ]


def _labelled(row: pd.Series) -> bool:
    """Whether the rollout has a ground-truth process label (worlds with a step checker)."""
    k = row.get("first_wrong_step")
    return k is not None and not pd.isna(k)


def _first_wrong(row: pd.Series) -> str:
    """``2 of 11: '5 - 7 = 2'`` (steps count from 0; the boxed answer is the last), or that none is."""
    k = int(row["first_wrong_step"])
    if k < 0:
        return "none: every step re-executes correctly"
    response, spans, span = str(row["response"]), row.get("step_spans"), row.get("wrong_span")
    line = (
        f": {_clip(response[int(spans[k][0]) : int(spans[k][1])], 60)!r}"
        if spans is not None and k < len(spans)
        else ""
    )
    blamed = "" if span is None else f" (outlined: {_clip(response[int(span[0]) : int(span[1])], 30)!r})"
    return f"{k} of {_fmt(row.get('n_steps'), 'd')}{line}{blamed}"


def _wrong_tokens(row: pd.Series, pieces: list[str]) -> set[int]:
    """The tokens the first wrong step is blamed on (outlined in the HTML report)."""
    span = row.get("wrong_span") if _labelled(row) else None
    return set() if span is None else set(span_tokens(pieces, (int(span[0]), int(span[1]))))


def format_rollout(row: pd.Series, tokenizer: Any, color: bool = True, column: str = "implicit_reward") -> str:
    """A rollout of ``rollout_frame`` for the terminal: a metadata header, the question, the
    response with each token coloured by ``column`` (default the implicit process reward) and a
    legend. A rollout whose prompt group was not selected has no per-token values: its response
    prints plain, with a note saying so. ``color=False`` gives plain text throughout."""
    pieces = token_pieces(tokenizer, row["response_ids"])
    values = _token_values(row, column)
    header = ["  ".join(f"{label}: {text}" for label, text in line) for line in _header_fields(row)]
    lines = [*header, "", "question:", str(row["question"]).rstrip(), ""]
    if values is None:
        lines += [f"response (no {column}: prompt group not selected, so never scored):", "".join(pieces)]
    elif not color:
        lines += ["response:", "".join(pieces)]
    else:
        scale = _scale(values, None)
        labels, legend_values = _legend_values(scale)
        lines += [
            f"response, background = {column} per token (red < 0 < green):",
            ansi_tokens(pieces, values, scale),
            "",
            "legend: " + ansi_tokens(labels, legend_values, scale),
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- HTML

#: Styles of the cards and summary; every class is prefixed ``ep-`` so that a notebook's own CSS
#: and these rules leave each other alone.
STYLE = """
.ep-page { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
  max-width: 1200px; margin: 0 auto; padding: 16px 24px; background: #fff; }
.ep-page h1 { font-size: 22px; margin: 0 0 4px; }
.ep-page h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.ep-muted { color: #57606a; font-size: 13px; }
.ep-stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.ep-stat { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 12px; min-width: 110px; }
.ep-stat b { display: block; font-size: 20px; }
.ep-tables { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
.ep-table { border-collapse: collapse; font-size: 13px; }
.ep-table th, .ep-table td { border: 1px solid #d0d7de; padding: 3px 10px; text-align: right; }
.ep-table th { background: #f6f8fa; }
.ep-table td:first-child, .ep-table th:first-child { text-align: left; }
.ep-card { border: 1px solid #d0d7de; border-radius: 8px; margin: 14px 0; overflow: hidden; }
.ep-card-head { background: #f6f8fa; padding: 8px 12px; font-size: 13px; border-bottom: 1px solid #d0d7de; }
.ep-card-body { padding: 8px 12px; }
.ep-badge { display: inline-block; border-radius: 10px; padding: 1px 9px; color: #fff;
  font-weight: 600; margin-right: 8px; }
.ep-ok { background: #1a7f37; }
.ep-bad { background: #cf222e; }
.ep-field { margin-right: 14px; white-space: nowrap; }
.ep-field i { color: #57606a; font-style: normal; }
.ep-label { font-size: 12px; font-weight: 600; color: #57606a; margin: 8px 0 3px; }
.ep-text, .ep-tokens { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 13px; line-height: 1.55; white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
.ep-text { background: #f6f8fa; border-radius: 6px; padding: 6px 8px; max-height: 14em; overflow: auto; }
.ep-tokens { border: 1px solid #eaeef2; border-radius: 6px; padding: 6px 8px; }
.ep-tokens span { border-radius: 2px; }
.ep-tokens .ep-nl { opacity: 0.45; }
.ep-tokens .ep-wrong { outline: 2px solid #c00; outline-offset: -1px; }
.ep-legend { display: inline-block; font-family: ui-monospace, monospace; font-size: 12px;
  margin-left: 8px; vertical-align: middle; }
.ep-legend span { padding: 1px 4px; }
.ep-card details summary { cursor: pointer; font-size: 12px; font-weight: 600; color: #57606a; margin: 8px 0 3px; }
"""


def _css_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def heatmap_html(
    pieces: Sequence[str], values: Sequence[float | None], scale: float | None = None, marked: Collection[int] = ()
) -> str:
    """The tokens as ``<span>``s whose background is their value's colour (the scale of
    ``ansi_tokens``) and whose tooltip gives the token and its value. Whitespace is the token's
    own (show it inside a ``white-space: pre-wrap`` element such as ``.ep-tokens``); a token that
    ends a line shows a faded ``↵`` before the newline, so a newline's colour is visible and can
    be hovered; text is HTML-escaped. Tokens whose index is in ``marked`` are outlined (class
    ``ep-wrong``: the ground-truth first wrong step)."""
    _check_aligned(pieces, values)
    scale = _scale(values, scale)
    spans = []
    newline = f'<span class="ep-nl">{_NEWLINE_MARK}</span>\n'
    for i, (piece, value) in enumerate(zip(pieces, values)):
        colors = _colors(value, scale)
        text = newline.join(html.escape(line) for line in piece.split("\n"))
        tip = html.escape(f"{piece!r} = {float(value):+.4g}" if _finite(value) else repr(piece))
        style = f' style="background:{_css_color(colors[0])};color:{_css_color(colors[1])}"' if colors else ""
        mark = ' class="ep-wrong"' if i in marked else ""
        spans.append(f'<span{mark}{style} title="{tip}">{text}</span>')
    return "".join(spans)


def _legend_html(scale: float) -> str:
    labels, values = _legend_values(scale)
    return f'<span class="ep-legend">{heatmap_html(labels, values, scale)}</span>'


def _heatmap_block(pieces: list[str], values: list[float], label: str, marked: Collection[int] = ()) -> str:
    scale = _scale(values, None)
    return (
        f'<div class="ep-label">{html.escape(label)} {_legend_html(scale)}</div>'
        f'<div class="ep-tokens">{heatmap_html(pieces, values, scale, marked)}</div>'
    )


def rollout_card(row: pd.Series, tokenizer: Any) -> str:
    """One rollout as an HTML card (classes of ``STYLE``): its metadata, question, a heatmap of
    its implicit process reward per token and, folded, one of its advantages. A rollout that was
    not selected shows its plain response."""
    ok = bool(row.get("correct"))
    badge = f'<span class="ep-badge {"ep-ok" if ok else "ep-bad"}">{"correct" if ok else "wrong"}</span>'
    fields = "<br>".join(
        "".join(
            f'<span class="ep-field"><i>{html.escape(label)}</i> {html.escape(text)}</span> '
            for label, text in line
            if label != "correct"
        )  # the badge says it
        for line in _header_fields(row)
    )
    pieces = token_pieces(tokenizer, row["response_ids"])
    wrong = _wrong_tokens(row, pieces)
    body = [f'<div class="ep-label">question</div><div class="ep-text">{html.escape(str(row["question"]))}</div>']
    rewards, advantages = _token_values(row, "implicit_reward"), _token_values(row, "advantages")
    if rewards is None:
        body.append(
            '<div class="ep-label">response (prompt group not selected: no process rewards)</div>'
            f'<div class="ep-tokens">{heatmap_html(pieces, [None] * len(pieces), 1.0, wrong) if wrong else html.escape("".join(pieces))}</div>'
        )
    else:
        body.append(
            _heatmap_block(pieces, rewards, "implicit process reward per token, β·(log π_prm − log π_ref)", wrong)
        )
    if advantages is not None:
        body.append(
            f"<details><summary>advantages per token</summary>"
            f"{_heatmap_block(pieces, advantages, 'advantage')}</details>"
        )
    return (
        f'<div class="ep-card"><div class="ep-card-head">{badge}{fields}</div>'
        f'<div class="ep-card-body">{"".join(body)}</div></div>'
    )


def rollout_cards(rows: pd.DataFrame, tokenizer: Any) -> str:
    """Cards of ``rows`` (of ``rollout_frame``) with their stylesheet: an HTML fragment to show in
    a notebook (``IPython.display.HTML``) or inside a page."""
    cards = "".join(rollout_card(row, tokenizer) for _, row in rows.iterrows())
    return f'<div class="ep-page"><style>{STYLE}</style>{cards}</div>'


def _table_html(table: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return html.escape(_fmt(value, ".3f") if isinstance(value, float) else str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in table.itertuples(index=False))
    return f'<table class="ep-table"><tr>{head}</tr>{rows}</table>'


def _stat(label: str, value: str) -> str:
    return f'<div class="ep-stat"><b>{html.escape(value)}</b><span class="ep-muted">{html.escape(label)}</span></div>'


def _summary_html(frame: pd.DataFrame) -> str:
    selected = frame["implicit_reward"].notna()
    stats = [
        _stat("rollouts", str(len(frame))),
        _stat("prompts", str(frame["prompt_id"].nunique())),
        _stat("selected rollouts", str(int(selected.sum()))),
        _stat("accuracy", f"{frame['correct'].mean():.1%}"),
        _stat("mean response length", f"{frame['response_length'].mean():.0f}"),
        _stat("truncated", f"{(frame['finish_reason'] == 'length').mean():.1%}"),
    ]
    return (
        f'<h2>Summary</h2><div class="ep-stats">{"".join(stats)}</div><div class="ep-tables">'
        f'<div><div class="ep-label">accuracy by data source</div>{_table_html(accuracy_by_source(frame))}</div>'
        f'<div><div class="ep-label">filter status (prompts)</div>{_table_html(filter_summary(frame))}</div>'
        "</div>"
    )


def _sample(pool: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return pool.sample(n=min(n, len(pool)), random_state=seed).sort_index()


def html_report(
    frame: pd.DataFrame, tokenizer: Any, *, title: str, n_correct: int = 5, n_wrong: int = 5, seed: int = 0
) -> str:
    """A self-contained HTML page (inline CSS, no script, nothing fetched) on ``frame`` (of
    ``rollout_frame``): a summary (rollouts, selected, accuracy by data source, filter status),
    then ``n_correct`` correct and ``n_wrong`` wrong selected rollouts drawn with ``seed``, each a
    card with its token heatmap (``rollout_card``). Same inputs, same page."""
    selected = frame[frame["implicit_reward"].notna()]
    sections = []
    for name, pool, n in (
        ("Correct", selected[selected["correct"]], n_correct),
        ("Wrong", selected[~selected["correct"]], n_wrong),
    ):
        shown = _sample(pool, n, seed)
        cards = "".join(rollout_card(row, tokenizer) for _, row in shown.iterrows()) or '<p class="ep-muted">none</p>'
        sections.append(
            f'<h2>{name} selected rollouts <span class="ep-muted">{len(shown)} of '
            f"{len(pool)}, sample seed {seed}</span></h2>{cards}"
        )
    versions = ", ".join(sorted(frame["policy_version"].dropna().unique()))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<div class="ep-page"><h1>{html.escape(title)}</h1>'
        f'<div class="ep-muted">policy {html.escape(versions)}. Token colour: implicit process '
        "reward β·(log π_prm − log π_ref), red &lt; 0 &lt; green, scaled per card to its largest "
        "|value|; hover a token for its value.</div>"
        f"{_summary_html(frame)}{''.join(sections)}</div></body></html>\n"
    )


def write_html_report(project: Path, iteration: int, out_path: Path | None = None, env: str | None = None) -> Path:
    """Write ``html_report`` of ``iteration`` (default
    ``data/08_reporting/rollout_reports/iter_NNNN.html`` in ``project``) and return its path."""
    project = Path(project).resolve()
    frame, tokenizer = load_rollouts(project, iteration, env)
    page = html_report(frame, tokenizer, title=f"{project.name}: iteration {iteration} rollouts")
    out = Path(out_path) if out_path else project / "data/08_reporting/rollout_reports" / f"{iter_dir(iteration)}.html"
    write_file_atomically(out, page)
    return out
