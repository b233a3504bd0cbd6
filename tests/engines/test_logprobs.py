import torch

from eurus_prime.engines.logprobs import sequence_logprobs


def test_chunked_logprobs_match_one_unpadded_forward_per_row(tiny_model):
    tiny_model.eval()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 300, (k,), generator=g) for k in (4, 7, 5)]
    responses = [torch.randint(3, 300, (k,), generator=g) for k in (3, 6, 1)]
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    ids = torch.zeros(3, p_len + r_len, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, p_len - len(p) : p_len] = p
        ids[i, p_len : p_len + len(r)] = r
        mask[i, p_len - len(p) : p_len + len(r)] = 1
    got = sequence_logprobs(tiny_model, ids, mask, r_len, chunk_rows=2)
    assert got.shape == (3, r_len)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        full = torch.cat([p, r])[None]
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(full).logits[0, :-1], -1)
        want = logp[len(p) - 1 :].gather(-1, r[:, None]).squeeze(-1)
        torch.testing.assert_close(got[i, : len(r)], want, atol=1e-4, rtol=1e-4)


def test_grad_flows_only_when_asked(tiny_model):
    ids = torch.randint(3, 300, (2, 6))
    mask = torch.ones_like(ids)
    assert not sequence_logprobs(tiny_model, ids, mask, 2).requires_grad
    out = sequence_logprobs(tiny_model, ids, mask, 2, grad=True)
    out.sum().backward()
    assert tiny_model.model.embed_tokens.weight.grad is not None


def _batch(seed=0, rows=5, vocab=300):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # one left-padded row
    return ids, mask


def test_head_chunks_give_the_full_logits_answer_with_and_without_grad(tiny_model):
    """Applying the output head by token chunks (and recomputing them in backward) changes nothing:
    log-probs, entropies and gradients equal those of model(...).logits + log_softmax."""
    from eurus_prime.engines import logprobs

    ids, mask = _batch()
    weights = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    results = {}
    for name, chunk_tokens in (("full", None), ("chunked", 3)):
        tiny_model.zero_grad()
        if chunk_tokens is None:  # the reference: the model's own logits
            split, logprobs._body_and_head = logprobs._body_and_head, lambda model: None
            try:
                lp, ent = sequence_logprobs(tiny_model, ids, mask, 4, grad=True, return_entropy=True)
            finally:
                logprobs._body_and_head = split
        else:
            assert logprobs._body_and_head(tiny_model) is not None
            lp, ent = sequence_logprobs(
                tiny_model,
                ids,
                mask,
                4,
                grad=True,
                return_entropy=True,
                chunk_logits=chunk_tokens * tiny_model.config.vocab_size,
            )
        ((lp * weights).sum() + ent.sum()).backward()
        results[name] = (
            lp.detach(),
            ent.detach(),
            tiny_model.model.layers[0].mlp.up_proj.weight.grad.clone(),
            tiny_model.lm_head.weight.grad.clone(),
        )
    for a, b in zip(results["full"], results["chunked"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
