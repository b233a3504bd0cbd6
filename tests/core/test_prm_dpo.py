"""The PRM's dpo loss (core/rewards.py, verl recipe/prime's ``dpo``): hand values and a plain loop."""

import math

import pytest
import torch

from eurus_prime.core.rewards import prm_dpo_baseline, prm_dpo_loss


def test_prm_dpo_baseline_and_loss_by_hand():
    scores = torch.tensor([0.2, -0.1, 0.4, 1.0, 2.0, 3.0])
    acc = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    # row 0 (right): the wrong row 1; row 1 (wrong): the right rows 0 and 2; group 2: nobody to face
    torch.testing.assert_close(prm_dpo_baseline(scores, acc, n=3), torch.tensor([-0.1, 0.3, -0.1, 0.0, 0.0, 0.0]))
    beta = 0.5
    diff = torch.tensor([[1.0, 0.2], [0.4, 0.0], [-0.6, -0.2]])  # prm - ref; z = beta * sum = 0.6, 0.2, -0.4
    prm = diff.clone().requires_grad_(True)
    baseline = torch.tensor([-0.1, 0.3, -0.1])
    loss = prm_dpo_loss(prm, torch.zeros(3, 2), torch.ones(3, 2), acc[:3], baseline, beta=beta)

    def nls(x):
        return -math.log(1 / (1 + math.exp(-x)))

    # right rows: sigma(z - b); wrong row: sigma(b - z)
    expected = (nls(0.6 + 0.1) + nls(0.3 - 0.2) + nls(-0.4 + 0.1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert prm.grad[0, 0] < 0 < prm.grad[1, 0]  # push the right sample up, the wrong one down


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prm_dpo_baseline_matches_a_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n, groups = 4, 5
    scores = torch.randn(groups * n, generator=g)
    acc = torch.randint(0, 3, (groups * n,), generator=g).float() / 2  # partial credit too
    expected = []
    for i in range(groups * n):
        start = i - i % n
        others = [
            float(scores[j]) for j in range(start, start + n) if (acc[j] < acc[i] if acc[i] > 0 else acc[j] > acc[i])
        ]
        expected.append(sum(others) / len(others) if others else 0.0)
    torch.testing.assert_close(prm_dpo_baseline(scores, acc, n), torch.tensor(expected))
