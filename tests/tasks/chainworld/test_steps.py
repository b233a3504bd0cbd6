"""The chains world's step checker, demonstrator and generator."""

import random

import pytest

from eurus_prime.tasks.chainworld.steps import Chain, label_steps, parse_expression
from eurus_prime.tasks.chainworld.world import ChainWorldConfig, demonstrate, generate_chain_world, is_novel, traps

Q = "State the final answer to the following arithmetic problem: 4 + 1 - 7 + 7 - 9 =\n\nPresent the answer"


def _resp(lines, boxed):
    return (
        "[ADVANCE]\n\n"
        + "\n".join(lines)
        + f"\n\nNext action: [OUTPUT]\n\n[OUTPUT]\n\nThe answer is \\boxed{{{boxed}}}"
    )


def test_parse_expression():
    chain = parse_expression(Q)
    assert chain == Chain(4, (("+", 1), ("-", 7), ("+", 7), ("-", 9)))
    assert chain.values == [4, 5, -2, 5, -4]
    assert chain.pattern == "+-+-"
    assert traps(chain) == [1, 4 - 1]  # 5 - 7 crosses zero; 5 - 9 too
    with pytest.raises(ValueError, match="no chain-sum expression"):
        parse_expression("What is the capital of France?")


RIGHT = ["4 + 1 = 5", "5 - 7 = -2", "-2 + 7 = 5", "5 - 9 = -4"]


def test_label_right_response():
    chain = parse_expression(Q)
    r = _resp(RIGHT, -4)
    label = label_steps(chain, r)
    assert label.first_wrong_step == -1 and label.n_steps == 5 and label.wrong_span is None
    assert [r[s:e] for s, e in label.spans] == RIGHT + ["The answer is \\boxed{-4}"]
    assert label_steps(chain, _resp(["4+1=5", "5 -7 =  -2", "-2 + 7 = 5", "5 - 9 = -4"], -4)).first_wrong_step == -1


@pytest.mark.parametrize(
    ("lines", "boxed", "first"),
    [
        (["4 + 1 = 5", "5 - 7 = 2", "2 + 7 = 9", "9 - 9 = 0"], 0, 1),  # the sign misconception
        (["4 + 1 = 6", "6 - 7 = -1", "-1 + 7 = 6", "6 - 9 = -3"], -3, 0),  # a slip at the first step
        (RIGHT, 4, 4),  # the output step
        (["4 + 1 = 5", "5 - 7 = -2", "-2 + 8 = 6", "6 - 9 = -3"], -3, 2),  # a term miscopied
        (["4 + 1 = 5", "5 - 7 = -2"], -2, 2),  # steps missing
        (RIGHT + ["-4 + 1 = -3"], -3, 4),  # an extra step
        (["4 + 1 = 5", "5 + 7 = 12", "12 + 7 = 19", "19 - 9 = 10"], 10, 1),  # wrong operator copied
        (["4 + 1 = 5", "3 - 7 = -4", "-4 + 7 = 3", "3 - 9 = -6"], -6, 1),  # does not continue the chain
    ],
)
def test_first_wrong_step(lines, boxed, first):
    r = _resp(lines, boxed)
    label = label_steps(parse_expression(Q), r)
    assert label.first_wrong_step == first
    assert label.wrong_span is not None and label.wrong_span[1] > label.wrong_span[0]


@pytest.mark.parametrize(
    ("lines", "boxed", "blamed"),
    [
        (["4 + 1 = 5", "5 - 7 = 2", "2 + 7 = 9", "9 - 9 = 0"], 0, "2"),  # the result's missing sign
        (["4 + 1 = 5", "5 - 7 = -2", "-2 + 8 = 6", "6 - 9 = -3"], -3, "8"),  # the miscopied term
        (["4 + 1 = 5", "5 + 7 = 12", "12 + 7 = 19", "19 - 9 = 10"], 10, "+"),  # the miscopied operator
        (["4 + 1 = 5", "3 - 7 = -4", "-4 + 7 = 3", "3 - 9 = -6"], -6, "3"),  # the start value
        (RIGHT, 4, "4"),  # the boxed answer
        (RIGHT + ["-4 + 1 = -3"], -3, "-4 + 1 = -3"),  # an extra step: its line
    ],
)
def test_blamed_span_is_the_first_wrong_field(lines, boxed, blamed):
    r = _resp(lines, boxed)
    label = label_steps(parse_expression(Q), r)
    s, e = label.wrong_span
    assert r[s:e] == blamed
    k = label.first_wrong_step
    if blamed != "-4 + 1 = -3":  # an extra line is no step of the chain's: it has no span of its own
        assert label.spans[k][0] <= s and e <= label.spans[k][1]  # inside the wrong step's line


def test_no_answer_blames_the_tail():
    label = label_steps(parse_expression(Q), "I do not know")
    assert label.first_wrong_step == 0 and label.spans == ()
    assert label.wrong_span == (0, len("I do not know"))


def test_demonstrator_drops_the_sign_at_traps_only():
    chain = parse_expression(Q)
    always = demonstrate(chain, random.Random(0), 1.0)
    assert "\n5 - 7 = 2\n" in always and label_steps(chain, always).first_wrong_step == 1
    never = demonstrate(chain, random.Random(0), 0.0)
    assert label_steps(chain, never).first_wrong_step == -1
    assert never.endswith("\\boxed{-4}")


def test_generator_splits_and_labels():
    cfg = ChainWorldConfig(n_sft=300, n_train=60, n_val=20, n_test=80, misconception_rate=0.7)
    prompts, demos = generate_chain_world(cfg)
    assert len(prompts) == 160 and len(demos) == 300
    info = prompts["extra_info"]
    assert set(info.map(lambda e: e["generator"])) == {"chain_sum"}
    test = prompts[info.map(lambda e: e["split"]) == "test"]
    novel = test["extra_info"].map(lambda e: e["novel"])
    assert novel.sum() == 40 and test["data_source"][novel].str.startswith("chains_novel").all()
    # Novel structures never reach the splits the model learns from.
    seen = prompts[info.map(lambda e: e["split"]) != "test"]
    for frame in (seen, demos):
        chains = [parse_expression(p[1]["content"]) for p in frame["prompt"]]
        assert not any(is_novel(c, cfg) for c in chains)
        assert all(
            cfg.min_traps <= len(traps(c)) <= cfg.max_traps and traps(c)[0] >= cfg.first_trap_step for c in chains
        )
    # No expression is in two splits.
    by_split = {}
    for p, e in zip(list(prompts["prompt"]) + list(demos["prompt"]), list(info) + list(demos["extra_info"])):
        by_split.setdefault(p[1]["content"], set()).add(e["split"])
    assert all(len(s) == 1 for s in by_split.values())
    # The demonstrations carry their ground-truth label, and the misconception makes most wrong.
    relabelled = [
        label_steps(parse_expression(p[1]["content"]), r).first_wrong_step
        for p, r in zip(demos["prompt"], demos["response"])
    ]
    assert relabelled == demos["first_wrong_step"].tolist()
    assert 0.05 < (demos["first_wrong_step"] == -1).mean() < 0.4


def test_generator_answers_agree_with_reasoning_gym_scorer():
    """Our math verifier and reasoning-gym's own score_answer agree on the demonstrations."""
    import reasoning_gym

    from eurus_prime.verifiers import verify

    cfg = ChainWorldConfig(n_sft=200, n_train=10, n_val=10, n_test=10)
    _, demos = generate_chain_world(cfg)
    ds = reasoning_gym.create_dataset("chain_sum", size=10, **cfg.generator_config())
    agree = 0
    for resp, rm in zip(demos["response"], demos["reward_model"]):
        ours = verify("math", resp, rm["ground_truth"]).correct
        boxed = resp.rsplit("\\boxed{", 1)[1].rstrip("}")
        theirs = ds.score_answer(boxed, {"answer": rm["ground_truth"]}) == 1.0
        agree += ours == theirs
    assert agree == len(demos)


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="chainworld.novel_terms"):
        ChainWorldConfig(novel_terms=(20,))
    with pytest.raises(ValueError, match="chainworld.min_traps"):
        ChainWorldConfig(min_traps=0)
