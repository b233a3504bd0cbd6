"""The countdown world's step checker and its outcome verifier."""

import pytest

from eurus_prime.tasks.countdown.steps import (
    Puzzle,
    answer_text,
    expression,
    label_steps,
    moves,
    parse_ground_truth,
    parse_question,
    reachable,
)
from eurus_prime.verifiers import verify
from eurus_prime.verifiers.countdown import grade_countdown

P = Puzzle((3, 8, 2, 9, 5), 42)


def _resp(lines, boxed):
    return (
        "[ADVANCE]\n\n"
        + "\n".join(lines)
        + f"\n\nNext action: [OUTPUT]\n\n[OUTPUT]\n\nThe answer is \\boxed{{{boxed}}}"
    )


def test_question_round_trip_and_ground_truth():
    text = "system...\n" + P.question() + "\n\nOne move per line"
    assert parse_question(text) == P
    assert parse_ground_truth(P.ground_truth()) == P
    with pytest.raises(ValueError, match="no countdown question"):
        parse_question("What is 2 + 2?")
    with pytest.raises(ValueError, match="countdown ground truth must be JSON"):
        parse_ground_truth("42")
    with pytest.raises(ValueError, match="'numbers' must list"):
        parse_ground_truth('{"numbers": [3], "target": 3}')


def test_moves_and_reachability():
    ms = moves([4, 7])
    assert sorted((a, op, b, c) for a, op, b, c, _ in ms) == [(7, "*", 4, 28), (7, "+", 4, 11), (7, "-", 4, 3)]
    assert len(moves([2, 2, 3])) == 6  # (2, 2) and (3, 2) with 3 operators each; the two 3-2 pairs count once
    assert reachable([4, 7], 28) and not reachable([4, 7], 29)
    assert reachable([3, 8, 2, 9, 5], 42)
    assert not reachable([1, 1, 1], 50)
    assert reachable([5], 5) and not reachable([], 0)


def _solve(puzzle):
    """Some right response for ``puzzle``, by search (the test's own, independent of label_steps)."""

    def go(pool):
        if len(pool) == 1:
            return [] if pool[0] == puzzle.target else None
        for a, op, b, c, rest in moves(pool):
            if c is None:
                continue
            tail = go([c, *rest])
            if tail is not None:
                return [f"{a} {op} {b} = {c} [{' '.join(map(str, [c, *rest]))}]", *tail]
        return None

    return go(list(puzzle.numbers))


def test_a_right_response_has_no_wrong_step_and_agrees_with_reasoning_gym():
    lines = _solve(P)
    r = _resp(lines, 42)
    label = label_steps(P, r)
    assert label.first_wrong_step == -1 and label.n_steps == 5 and label.wrong_span is None and label.final == 42
    assert [r[s:e] for s, e in label.spans[:4]] == lines
    v = grade_countdown(r, P.ground_truth())
    assert v.correct and v.score == 1.0 and v.reason == "correct" and v.extracted == "42"
    assert verify("countdown", r, P.ground_truth()) == v
    expr = expression(P, r)
    assert eval(expr) == 42  # noqa: S307 - our own generated arithmetic
    reasoning_gym = pytest.importorskip("reasoning_gym")
    ds = reasoning_gym.create_dataset("countdown", size=1, seed=0)
    assert ds.score_answer(expr, {"metadata": {"numbers": list(P.numbers), "target": 42}}) == 1.0
    assert answer_text(r).endswith("=> 42") and "[" not in answer_text(r)


@pytest.mark.parametrize(
    ("lines", "boxed", "step", "blamed", "why"),
    [
        (["9 - 4 = 5 [5 8 2 5]"], 42, 0, "4", "does not hold"),  # 4 is not in the pool
        (["9 - 3 = 7 [7 8 2 5]"], 42, 0, "7", "is 6, not 7"),  # arithmetic slip: the result is blamed
        (["3 - 9 = 0 [0 8 2 5]"], 42, 0, "3 - 9", "negative"),
        (["9 * 8 = 72 [72 3 2 5]", "72 * 5 = 360 [360 3 2]"], 42, 1, "72 * 5", "cannot be made"),
        ([], 42, 0, "The answer is \\boxed{42}", "missing"),  # missing move: the output line is blamed
    ],
)
def test_first_wrong_step(lines, boxed, step, blamed, why):
    r = _resp(lines, boxed)
    label = label_steps(P, r)
    assert label.first_wrong_step == step and why in label.why
    s, e = label.wrong_span
    assert r[s:e] == blamed
    v = grade_countdown(r, P.ground_truth())
    assert not v.correct and v.reason == "wrong" and f'"first_wrong_step": {step}' in v.detail


def test_output_step_and_extra_moves():
    lines = _solve(P)
    wrong_box = _resp(lines, 41)
    label = label_steps(P, wrong_box)
    assert label.first_wrong_step == 4 and wrong_box[slice(*label.wrong_span)] == "41"
    extra = _resp([*lines, "42 + 0 = 42 [42]"], 42)
    assert label_steps(P, extra).first_wrong_step == 4
    no_box = "[ADVANCE]\n\n" + "\n".join(lines)
    assert label_steps(P, no_box).first_wrong_step == 4
    assert grade_countdown(no_box, P.ground_truth()).reason == "no_answer"


def test_boxing_the_target_alone_earns_nothing():
    """The target is in the question: a verifier that read only the box could be farmed."""
    v = grade_countdown("The answer is \\boxed{42}", P.ground_truth())
    assert not v.correct and v.extracted == "42"
    assert grade_countdown("", P.ground_truth()).reason == "no_answer"
    bad = grade_countdown("\\boxed{42}", "not json")
    assert bad.reason == "error" and "countdown ground truth" in bad.error


def test_the_puzzles_operators_bound_the_moves():
    p = Puzzle((4, 7, 2), 13, ("+", "-"))
    assert parse_question(p.question()) == p and "with + or -," in p.question()
    assert parse_ground_truth(p.ground_truth()) == p
    assert {op for _, op, _, _, _ in moves([4, 7], p.ops)} == {"+", "-"}
    assert reachable([4, 7, 2], 13, p.ops) and not reachable([4, 7, 2], 56, p.ops) and reachable([4, 7, 2], 56)
    r = _resp(["7 * 2 = 14 [14 4]", "14 - 4 = 10 [10]"], 10)
    label = label_steps(p, r)
    assert label.first_wrong_step == 0 and "does not allow" in label.why and r[slice(*label.wrong_span)] == "*"
    with pytest.raises(ValueError, match="countdown operators must be some of"):
        Puzzle((1, 2), 3, ("/",))
