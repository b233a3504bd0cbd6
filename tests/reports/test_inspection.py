"""The rollout inspection library: token pieces, terminal and HTML heatmaps, the joined frame and
the report, on the tables of the shared ``trained_project`` (two iterations of the tiny world)."""

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eurus_prime.reports import inspection
from eurus_prime.tasks.tokens import token_pieces

ITERATION = 1


@pytest.fixture(scope="module")
def project(trained_project, tmp_path_factory) -> Path:
    """A private copy of the trained project: opening a Kedro session may write into it."""
    return Path(shutil.copytree(trained_project, tmp_path_factory.mktemp("inspect") / "project"))


@pytest.fixture(scope="module")
def tables(project) -> dict[str, pd.DataFrame]:
    return inspection.load_iteration(project, ITERATION)


@pytest.fixture(scope="module")
def tokenizer(project):
    return inspection.load_tokenizer(project)


@pytest.fixture(scope="module")
def frame(tables) -> pd.DataFrame:
    return inspection.rollout_frame(tables)


def _unselect_first_prompt(tables: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], str]:
    """The tables as if the first prompt group had been filtered out (the tiny project selects
    every group): no per-token rows for it, status ``too_easy``."""
    pid = tables["filter_report"]["prompt_id"].iloc[0]
    out = dict(tables)
    for name in ("process_rewards", "prm_rewards", "advantages"):
        out[name] = tables[name][tables[name]["prompt_id"] != pid]
    report = tables["filter_report"].copy()
    report.loc[report["prompt_id"] == pid, ["status", "selected"]] = ["too_easy", False]
    out["filter_report"] = report
    return out, pid


# ------------------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "text",
    [
        "def run(x):\n    return  x + 5\n\n\n",
        "  leading spaces, trailing tab\t",
        "h\u00e9llo \u2192 \U0001f600 caf\u00e9\n\\boxed{8}",
        "The answer is 8<|im_end|>",
    ],
)
def test_token_pieces_round_trip(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == tokenizer.decode(ids) == text


def test_token_pieces_keep_a_character_split_over_tokens_whole(tokenizer):
    ids = tokenizer("x\U0001f600y", add_special_tokens=False)["input_ids"]
    assert len(ids) > 3  # the emoji's four bytes are several tokens
    pieces = token_pieces(tokenizer, ids)
    assert "\U0001f600" in pieces[1:-1] and pieces.count("") == len(ids) - 3
    truncated = ids[:-2]  # a response cut inside the emoji still round-trips (replacement text)
    assert "".join(token_pieces(tokenizer, truncated)) == tokenizer.decode(truncated)
    assert token_pieces(tokenizer, []) == []


def test_token_pieces_of_real_rollouts(frame, tokenizer):
    for row in frame.itertuples():
        pieces = token_pieces(tokenizer, row.response_ids)
        assert len(pieces) == row.response_length
        assert "".join(pieces) == tokenizer.decode(list(row.response_ids))


# --------------------------------------------------------------------------------------- ANSI


def test_ansi_tokens_colour_by_sign_and_leave_missing_plain():
    out = inspection.ansi_tokens(["neg", "pos", "end\n", "none", "zero"], [-2.0, 2.0, 1.0, None, 0.0])
    assert out.startswith("\x1b[48;2;214;39;40m") and "neg\x1b[0m" in out  # full red at -scale
    assert "\x1b[48;2;44;160;44m\x1b[38;2;255;255;255mpos\x1b[0m" in out  # full green at +scale
    assert "end\x1b[0m" in out and "\u21b5\x1b[0m\n" in out  # the newline is outside the colour
    assert out.endswith("\nnonezero")  # None and 0 print plain


def test_ansi_tokens_scale_and_palette():
    half = inspection.ansi_tokens(["a"], [1.0], scale=2.0)
    assert "\x1b[48;2;150;208;150m" in half  # half way from white to green
    assert inspection.ansi_tokens(["a"], [5.0], scale=2.0) == inspection.ansi_tokens(["a"], [2.0])  # clipped
    assert "\x1b[48;5;" in inspection.ansi_tokens(["a"], [-1.0], truecolor=False)
    with pytest.raises(ValueError, match="2 token pieces but 1 values"):
        inspection.ansi_tokens(["a", "b"], [1.0])


# ------------------------------------------------------------------------------------ joining


def test_rollout_frame_joins_one_row_per_rollout(tables, frame):
    assert len(frame) == len(tables["rollouts"])
    assert frame[inspection.KEY].equals(tables["rollouts"][inspection.KEY])
    selected = frame[frame["implicit_reward"].notna()]
    assert len(selected) == len(tables["process_rewards"])
    for row in selected.itertuples():
        assert len(row.implicit_reward) == len(row.token_rewards) == len(row.advantages) == row.response_length
    assert frame["question"].map(len).gt(0).all()
    assert all(q in t for q, t in zip(frame["question"], frame["prompt_text"]))
    assert len(frame.query("correct == False")) == int((~tables["outcomes"]["correct"]).sum())
    assert frame.query("ability == 'math' and score > 0")["ability"].eq("math").all()


def test_rollout_frame_leaves_unselected_rollouts_without_token_values(tables):
    frame = inspection.rollout_frame(_unselect_first_prompt(tables)[0])
    gone = frame[frame["status"] == "too_easy"]
    assert len(gone) > 0 and len(frame) == len(tables["rollouts"])
    for column in inspection.TOKEN_COLUMNS:
        assert gone[column].map(lambda v: v is None).all()
    assert gone["sequence_score"].isna().all()
    without_prompts = inspection.rollout_frame({k: v for k, v in tables.items() if k != "drawn_prompts"})
    assert without_prompts["question"].equals(without_prompts["prompt_text"])


def test_summaries(frame):
    by_source = inspection.accuracy_by_source(frame)
    assert by_source["rollouts"].sum() == len(frame)
    assert by_source["selected"].sum() == frame["implicit_reward"].notna().sum()
    status = inspection.filter_summary(frame)
    assert status["prompts"].sum() == frame["prompt_id"].nunique()


# ----------------------------------------------------------------------------------- terminal


def test_format_rollout(tables, frame, tokenizer):
    row = frame.iloc[0]
    text = inspection.format_rollout(row, tokenizer)
    for part in (
        row["prompt_id"],
        f"iteration: {ITERATION}",
        "sequence score",
        "filter: selected",
        row["question"].strip(),
        "legend",
        "\x1b[48;2;",
    ):
        assert part in text
    plain = inspection.format_rollout(row, tokenizer, color=False)
    assert "\x1b" not in plain and tokenizer.decode(list(row["response_ids"])) in plain

    unselected_tables, pid = _unselect_first_prompt(tables)
    unselected = inspection.rollout_frame(unselected_tables).query("prompt_id == @pid").iloc[0]
    text = inspection.format_rollout(unselected, tokenizer)
    assert "not selected" in text and "\x1b" not in text and "sequence score: -" in text


# --------------------------------------------------------------------------------------- HTML


class _TagChecker(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    VOID = {"meta", "br"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        self.text.append(data)


def _with_hostile_text(frame: pd.DataFrame, tokenizer) -> pd.DataFrame:
    """The first rollout answering with markup, and asked with some."""
    frame = frame.copy()
    ids = np.asarray(tokenizer("<script>alert('x')</script> & \"quotes\"\n", add_special_tokens=False)["input_ids"])
    values = np.linspace(-1, 1, len(ids))
    for column, value in (
        ("response_ids", ids),
        ("implicit_reward", values),
        ("token_rewards", values),
        ("advantages", values),
        ("response_length", len(ids)),
        ("question", "<b>bold</b> question"),
        ("correct", True),
    ):
        cells = frame[column].tolist()
        cells[0] = value
        frame[column] = pd.Series(cells, index=frame.index)
    return frame


def test_html_report_is_self_contained_escaped_and_deterministic(frame, tokenizer):
    hostile = _with_hostile_text(frame, tokenizer)
    everything = {"n_correct": len(frame), "n_wrong": len(frame)}
    page = inspection.html_report(hostile, tokenizer, title="<report>", **everything)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    checker = _TagChecker()
    checker.feed(page)
    assert checker.stack == []
    tags = {tag for tag, _ in checker.tags}
    assert {"script", "link", "img", "iframe"}.isdisjoint(tags)
    assert not any(
        v and v.startswith(("http://", "https://", "//"))
        for _, attrs in checker.tags
        for k, v in attrs.items()
        if k in ("src", "href")
    )
    assert "url(" not in page and "@import" not in page
    assert "<script>alert('x')</script> & \"quotes\"" in "".join(checker.text)  # shown as text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<title>&lt;report&gt;</title>" in page
    tips = [attrs["title"] for tag, attrs in checker.tags if tag == "span" and "background" in attrs.get("style", "")]
    assert any(t.startswith("'<") and t.endswith(" = -1") for t in tips)  # the tooltip: token, value
    assert page.count('class="ep-card"') == int(frame["implicit_reward"].notna().sum())
    assert page == inspection.html_report(hostile, tokenizer, title="<report>", **everything)


def test_html_report_samples_correct_and_wrong_selected_rollouts(frame, tokenizer):
    page = inspection.html_report(frame, tokenizer, title="t", n_correct=1, n_wrong=1, seed=3)
    selected = frame[frame["implicit_reward"].notna()]
    n_correct, n_wrong = int(selected["correct"].sum()), int((~selected["correct"]).sum())
    assert page.count('class="ep-card"') == min(n_correct, 1) + min(n_wrong, 1)
    assert f"{min(n_correct, 1)} of {n_correct}, sample seed 3" in page
    assert "accuracy by data source" in page and "filter status" in page


def test_write_html_report_defaults_to_the_iteration_reporting_folder(project):
    out = inspection.write_html_report(project, ITERATION)
    assert out == project / "data/08_reporting/rollout_reports/iter_0001.html"
    assert "iteration 1 rollouts" in out.read_text(encoding="utf-8")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_load_iteration_names_what_to_run_for_a_missing_iteration(project):
    with pytest.raises(
        FileNotFoundError, match=r"iteration 7 .*kedro run --pipelines=prime_iteration --params=iteration=7"
    ):
        inspection.load_iteration(project, 7, tables=("rollouts", "outcomes"))


def test_load_rollouts_gives_the_joined_frame_and_its_tokenizer_in_one_session(project, frame, tokenizer):
    loaded, tok = inspection.load_rollouts(project, ITERATION)
    pd.testing.assert_frame_equal(loaded, frame)
    assert tok.get_vocab() == tokenizer.get_vocab()
    with pytest.raises(FileNotFoundError, match=r"iteration 7 .*eurus-prime train"):
        inspection.load_rollouts(project, 7)


def test_report_renders_in_headless_chromium(project, tmp_path):
    """The HTML rollout report in a real browser. CI (``CI=true``, ``.ci/run`` installs Chromium)
    must run it; elsewhere it skips when ``chromium`` is not on PATH, and says so."""
    import matplotlib.image

    if shutil.which("chromium") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but `chromium` is not on PATH: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs headless Chromium (`chromium` on PATH); skipped outside CI only")

    report = inspection.write_html_report(project, ITERATION, out_path=tmp_path / "report.html")
    png = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, tables, badges: not one flat colour
    r, g, b = (pixels[..., i] for i in range(3))
    assert ((g - r > 0.25) & (g - b > 0.25)).any() or ((r - g > 0.25) & (r - b > 0.25)).any()  # a badge or a token
