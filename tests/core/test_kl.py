"""KL estimators k1/k2/k3 (core/kl.py): hand values and their expectations."""

import math

import pytest
import torch

from eurus_prime.core.kl import kl_penalty


def test_kl_estimators_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    ln2 = math.log(2)
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([[ln2, -ln2]]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([[0.5 * ln2**2, 0.5 * ln2**2]]))
    # k3 = r - log r - 1 with r = ref/p: 0.5 + ln2 - 1 and 2 - ln2 - 1
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor([[0.5 + ln2 - 1, 1 - ln2]]))
    # k3 clamps the log-ratio to [-20, 20] and the estimate to 10, as verl
    far = kl_penalty(torch.tensor([[0.0, -30.0]]), torch.tensor([[-30.0, 0.0]]), "k3")
    torch.testing.assert_close(far, torch.tensor([[math.exp(-20) + 20 - 1, 10.0]]).clamp(max=10.0))
    with pytest.raises(ValueError, match=r"KL estimator must be one of \['k1', 'k2', 'k3'\], got 'k4'"):
        kl_penalty(logp, ref, "k4")


def test_k1_and_k3_are_unbiased_for_the_exact_kl():
    # Averaged over the sampling distribution p itself (every token weighted by its probability),
    # k1 and k3 give KL(p || q) exactly; k2 does not.
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = float((p * (p.log() - q.log())).sum())
    for name in ("k1", "k3"):
        assert float((p * kl_penalty(p.log(), q.log(), name)).sum()) == pytest.approx(exact, rel=1e-5)
    assert float((p * kl_penalty(p.log(), q.log(), "k2")).sum()) != pytest.approx(exact, rel=1e-3)
