"""Oracle process rewards and PRM quality metrics on hand-made chains rollouts."""

import numpy as np
import pandas as pd
import pytest
import torch

from eurus_prime.core.prm_eval import first_error_localisation, roc_auc
from eurus_prime.core.rewards import oracle_process_rewards
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime import rollouts as rollouts_lib
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.tasks.steps import span_tokens
from eurus_prime.tasks.tokens import token_pieces

Q = "State the final answer to the following arithmetic problem: 4 + 1 - 7 + 7 =\n\nPresent the answer"
RIGHT = "[ADVANCE]\n\n4 + 1 = 5\n5 - 7 = -2\n-2 + 7 = 5\n\n[OUTPUT]\n\nThe answer is \\boxed{5}"
WRONG = "[ADVANCE]\n\n4 + 1 = 5\n5 - 7 = 2\n2 + 7 = 9\n\n[OUTPUT]\n\nThe answer is \\boxed{9}"


def test_oracle_process_rewards_by_hand():
    blame = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0]])
    r = oracle_process_rewards(blame, mask)
    assert torch.allclose(r, torch.tensor([[0, -0.5, -0.5, 0], [0, 0, 0, 0], [-1 / 3, -1 / 3, -1 / 3, 0]]))


def test_roc_auc_by_hand():
    assert roc_auc([0.9, 0.8, 0.1, 0.3], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.8, 0.9, 0.3], [1, 1, 0, 0]) == 0.25  # pairs (pos, neg): 1 of 4 ordered right
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5  # a tie counts one half
    assert np.isnan(roc_auc([0.5, 0.4], [1, 1]))


def test_first_error_localisation_by_hand():
    m = first_error_localisation(
        step_rewards=[[0.1, -0.5, 0.2], [-0.1, -0.3, 0.0], [0.2, 0.3], [0.2, -0.1], [0.1]],
        first_wrong=[1, 0, -1, -1, 3],
        threshold=0.0,
    )
    # wrong rows: 0 (argmin 1 = 1 hit; first below 0 is step 1: hit), 1 (argmin 1 != 0; first below 0 is 0: hit),
    # 4 (its wrong step was never written: a miss); right rows: 2 (nothing below 0: hit), 3 (step 1 below 0: miss)
    assert m["argmin_share"] == pytest.approx(1 / 3)
    assert m["error_acc"] == pytest.approx(2 / 3) and m["correct_acc"] == 0.5
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert (m["n_wrong"], m["n_right"]) == (3, 2)


def test_localisation_threshold_is_calibrated_to_the_best_f1():
    # Every right response dips below 0 somewhere (noise an implicit PRM always has), so threshold
    # 0 gives correct_acc 0 and an F1 of 0; the wrong steps score lower than any right step.
    rewards = [[0.3, -0.2, 0.1], [-0.1, 0.2], [0.2, -0.9, 0.1], [-0.8, 0.3], [0.1, 0.1, -1.0]]
    first_wrong = [-1, -1, 1, 0, 2]
    assert first_error_localisation(rewards, first_wrong, threshold=0.0)["f1"] == 0.0
    m = first_error_localisation(rewards, first_wrong)
    # any threshold in (-0.8, -0.2] separates them; the lowest score-valued one is -0.2 (strictly below flags)
    assert m["threshold"] == -0.2
    assert m["error_acc"] == 1.0 and m["correct_acc"] == 1.0 and m["f1"] == 1.0
    # one class missing: nothing to calibrate, the fixed 0 is used
    assert first_error_localisation([[0.1]], [-1])["threshold"] == 0.0
    # a wrong response that flags too early is a miss; the calibration trades both shares
    m = first_error_localisation([[-0.5, -0.9], [-0.4]], [1, -1])
    assert m["threshold"] == -0.5 and (m["error_acc"], m["correct_acc"]) == (1.0, 1.0)


@pytest.fixture()
def chain_batch(tiny_tokenizer):
    tok = tiny_tokenizer
    responses = [RIGHT, WRONG, WRONG, RIGHT]
    ids = [np.asarray(tok(r, add_special_tokens=False)["input_ids"], dtype=np.int32) for r in responses]
    rollouts = pd.DataFrame(
        {
            "prompt_id": "train/0",
            "sample_idx": range(4),
            "data_source": "chains_id_t4",
            "ability": "math",
            "ground_truth": "5",
            "prompt_text": Q,
            "response": responses,
            "response_ids": ids,
        }
    )
    outcomes = rollouts_lib.verify_rollouts(rollouts)
    return tok, rollouts, outcomes


def test_outcomes_carry_the_ground_truth_first_wrong_step(chain_batch):
    _, _, outcomes = chain_batch
    assert outcomes["first_wrong_step"].tolist() == [-1, 1, 1, -1]
    assert outcomes["correct"].tolist() == [True, False, False, True]
    s, e = outcomes["wrong_span"][1]
    assert WRONG[s:e] == "2"  # the result without its sign


def test_oracle_rewards_sit_on_the_first_wrong_step(chain_batch):
    tok, rollouts, outcomes = chain_batch
    prm_rewards = pd.DataFrame(
        {
            "prompt_id": "train/0",
            "sample_idx": range(4),
            "sequence_score": 0.0,
            "token_rewards": [np.zeros(len(i), np.float32) for i in rollouts["response_ids"]],
        }
    )
    out = prm_lib.oracle_rewards(prm_rewards, rollouts, outcomes, tok)
    assert (out["process_reward"] == "oracle").all()
    for ids, r, k in zip(rollouts["response_ids"], out["token_rewards"], outcomes["first_wrong_step"]):
        assert r.sum() == pytest.approx(-1.0 if k >= 0 else 0.0)
        blamed = "".join(p for p, v in zip(token_pieces(tok, ids), r) if v < 0)
        assert blamed.strip() == ("2" if k >= 0 else "")


def test_oracle_refuses_rows_without_step_labels(chain_batch):
    tok, rollouts, outcomes = chain_batch
    tiny = rollouts.assign(data_source="tiny_math_d1")
    prm_rewards = pd.DataFrame({"prompt_id": "train/0", "sample_idx": range(4), "token_rewards": [None] * 4})
    with pytest.raises(ValueError, match="has none: only worlds with a step checker"):
        prm_lib.oracle_rewards(prm_rewards, tiny, rollouts_lib.verify_rollouts(tiny), tok)


def test_prm_quality_localises_a_reward_dip_on_the_wrong_step(chain_batch):
    tok, rollouts, outcomes = chain_batch
    implicit = []
    for ids, span in zip(rollouts["response_ids"], outcomes["wrong_span"]):
        r = np.full(len(ids), 0.01, np.float32)
        if span is not None:
            pieces = token_pieces(tok, ids)
            r[span_tokens(pieces, tuple(span))] = -0.2
        implicit.append(r)
    process_rewards = pd.DataFrame(
        {
            "prompt_id": "train/0",
            "sample_idx": range(4),
            "implicit_reward": implicit,
            "sequence_score": [float(r.sum()) for r in implicit],
        }
    )
    m = prm_lib.prm_quality(process_rewards, rollouts, outcomes, tok, PrimeConfig())
    assert m["prm/auc_before"] == 1.0
    assert m["prm/localisation"] == 1.0 and m["prm/error_acc"] == 1.0 and m["prm/correct_acc"] == 1.0
    assert m["prm/localisation_f1"] == 1.0
    z, y = torch.tensor([float(r.sum()) for r in implicit]), torch.tensor([1.0, 0, 0, 1])
    assert m["prm/ce_before"] == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)))


def test_html_card_outlines_the_first_wrong_step(chain_batch):
    from eurus_prime.reports.inspection import rollout_card

    tok, rollouts, outcomes = chain_batch
    frame = rollouts.merge(outcomes.drop(columns=["data_source", "ability"]), on=["prompt_id", "sample_idx"])
    row = frame.iloc[1].copy()
    row["iteration"], row["status"], row["prompt_accuracy"], row["question"] = 0, "selected", 0.5, Q
    row["response_length"], row["finish_reason"] = len(row["response_ids"]), "stop"
    row["sequence_score"], row["advantages"] = 0.0, None
    row["implicit_reward"] = np.zeros(len(row["response_ids"]), np.float32)
    card = rollout_card(row, tok)
    assert "first wrong step" in card and "1 of 4: &#x27;5 - 7 = 2&#x27; (outlined: &#x27;2&#x27;)" in card
    outlined = "".join(
        part.split(">", 1)[1].split("</span>", 1)[0] for part in card.split('<span class="ep-wrong"')[1:]
    )
    assert outlined.strip() == "2"
    right = frame.iloc[0].copy()
    for key in (
        "iteration",
        "status",
        "prompt_accuracy",
        "question",
        "response_length",
        "finish_reason",
        "sequence_score",
        "advantages",
        "implicit_reward",
    ):
        right[key] = row[key] if key != "implicit_reward" else None
    card = rollout_card(right, tok)
    assert "none: every step re-executes correctly" in card and "ep-wrong" not in card


def test_progress_process_rewards_by_hand():
    from eurus_prime.core.rewards import progress_process_rewards

    step = torch.tensor([[1, 1, 2, 0, 0], [1, 2, 2, 3, 0], [0, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    r = progress_process_rewards(step, mask, torch.tensor([4, 3, 4]))
    assert torch.allclose(
        r, torch.tensor([[0.125, 0.125, 0.25, 0, 0], [1 / 3, 1 / 6, 1 / 6, 1 / 3, 0], [0, 0, 0, 0, 0]])
    )


def test_progress_oracle_pays_the_steps_before_the_first_error(chain_batch):
    tok, rollouts, outcomes = chain_batch
    prm_rewards = pd.DataFrame(
        {
            "prompt_id": "train/0",
            "sample_idx": range(4),
            "sequence_score": 0.0,
            "token_rewards": [np.zeros(len(i), np.float32) for i in rollouts["response_ids"]],
        }
    )
    out = prm_lib.oracle_rewards(prm_rewards, rollouts, outcomes, tok, "oracle_progress")
    assert (out["process_reward"] == "oracle_progress").all()
    for ids, r, k in zip(rollouts["response_ids"], out["token_rewards"], outcomes["first_wrong_step"]):
        # 4 steps (3 lines and the boxed answer); the wrong rollouts got step 0 right, then erred
        assert r.sum() == pytest.approx(1.0 if k < 0 else 0.25)
        paid = "".join(p for p, v in zip(token_pieces(tok, ids), r) if v > 0)
        assert paid.strip() == ("4 + 1 = 5" if k >= 0 else paid.strip())
