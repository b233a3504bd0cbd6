"""A batched sampler for Llama/Qwen2-family causal LMs: the CPU rollout engine ``fast``.

Why not ``model.generate``: on a small model, each decoding step of ``generate`` spends most of its
time in Python (logits processors, stopping criteria, cache objects, mask building, module calls),
not in arithmetic. This sampler runs the same decoder maths as a few tensor operations per layer:

- **preallocated KV cache**: one (rows, kv_heads, prompt + budget, head_dim) key and value tensor
  per layer, written in place, no per-step allocation or concatenation;
- **fused projections**: q/k/v and gate/up are one matmul each (weights concatenated once per
  call, so the sampler always uses the model's current weights);
- **finished rows leave the batch**: when the rows still decoding fall below ``compact_ratio`` of
  the batch, the cache is compacted to those rows, so a batch costs what its long rows need;
- **length bucketing**: prompts are sorted by length before batching (little left padding);
- **sampling log-probs**: the log-probability of each sampled token under the sampling
  distribution (logits / temperature, before top-p) comes back with the tokens. At temperature 1
  and top-p 1 these are the policy's own token log-probs, so the old-policy scoring pass can reuse
  them (``tests/engines/rollout/test_fast_engine.py`` asserts they equal a teacher-forced forward pass).

It covers decoder-only models whose layers are RMSNorm → attention (GQA, rotary, optional q/k/v
bias) → RMSNorm → SwiGLU MLP with static rotary embeddings: ``qwen2`` and ``llama`` (Eurus-2-7B,
the tiny world's models, SmolLM2). :func:`unsupported_reason` says why any other model is not;
``generate(engine="fast")`` then falls back to the ``hf`` engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from eurus_prime.engines.rollout.base import ProgressFn, Sample

SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
#: Rotary variants whose frequencies are fixed at load time (the module's ``inv_freq`` holds them).
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def unsupported_reason(model) -> str | None:
    """None when :func:`sample` can run ``model``, else why not (one line, for a log message)."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        return f"model_type {kind!r} is not one of {SUPPORTED_MODEL_TYPES}"
    rope = getattr(cfg, "rope_parameters", None) or {}
    rope_type = rope.get("rope_type", "default") if isinstance(rope, dict) else "default"
    if rope_type not in STATIC_ROPE_TYPES:
        return f"rope_type {rope_type!r} is not one of {STATIC_ROPE_TYPES}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r} is not silu"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention is not supported"
    if getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        return "pretraining_tp > 1 is not supported"
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or not hasattr(base, "rotary_emb"):
        return f"{type(model).__name__} has no .model.layers / .model.rotary_emb"
    return None


class _Decoder:
    """The model's weights arranged for the sampler (views or one-off concatenations)."""

    def __init__(self, model) -> None:
        cfg = model.config
        base = model.model
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.embed = base.embed_tokens.weight
        self.final_norm = base.norm.weight
        self.lm_head = model.lm_head.weight
        self.lm_head_bias = getattr(model.lm_head, "bias", None)
        self.inv_freq = base.rotary_emb.inv_freq
        self.rope_scale = float(getattr(base.rotary_emb, "attention_scaling", 1.0))
        self.layers = []
        for layer in base.layers:
            att, mlp = layer.self_attn, layer.mlp
            projs = (att.q_proj, att.k_proj, att.v_proj)
            bias = None
            if any(p.bias is not None for p in projs):
                bias = torch.cat(
                    [p.bias if p.bias is not None else torch.zeros(p.out_features, dtype=p.weight.dtype) for p in projs]
                )
            gate_up_bias = None
            if mlp.gate_proj.bias is not None:
                gate_up_bias = torch.cat([mlp.gate_proj.bias, mlp.up_proj.bias])
            self.layers.append(
                (
                    layer.input_layernorm.weight,
                    torch.cat([p.weight for p in projs]),
                    bias,
                    att.o_proj.weight,
                    att.o_proj.bias,
                    layer.post_attention_layernorm.weight,
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                    gate_up_bias,
                    mlp.down_proj.weight,
                    mlp.down_proj.bias,
                )
            )
        self.q_size = self.n_heads * self.head_dim
        self.kv_size = self.n_kv * self.head_dim
        self.intermediate = cfg.intermediate_size

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # As transformers' Qwen2/Llama RMSNorm: statistics in float32, scale in the input dtype.
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(dtype)

    def rope_table(self, length: int) -> None:
        """Precompute cos/sin for positions [0, length) (as transformers' rotary embedding does per call)."""
        dtype = self.embed.dtype
        positions = torch.arange(length, device=self.embed.device).float()
        freqs = positions[:, None] * self.inv_freq.float()[None]
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = (emb.cos() * self.rope_scale).to(dtype), (emb.sin() * self.rope_scale).to(dtype)

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of shape (rows, 1, seq, head_dim) for integer ``positions`` (rows, seq)."""
        return self.cos[positions][:, None], self.sin[positions][:, None]

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor, caches, start: int, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Run ``ids`` (rows, seq) at cache columns [start, start + seq); return the last position's
        hidden state (rows, hidden) after the final norm. ``mask`` (rows, 1, seq, start + seq) is
        True where a query may attend a key; None: attend every cached key (no padding, seq 1)."""
        rows, seq = ids.shape
        x = F.embedding(ids, self.embed)
        cos, sin = self.rope(positions)
        end = start + seq
        for (ln1, w_qkv, b_qkv, w_o, b_o, ln2, w_gu, b_gu, w_down, b_down), (k_cache, v_cache) in zip(
            self.layers, caches
        ):
            h = self.norm(x, ln1)
            qkv = F.linear(h, w_qkv, b_qkv)
            q, k, v = qkv.split((self.q_size, self.kv_size, self.kv_size), dim=-1)
            q = self.rotate(q.view(rows, seq, self.n_heads, self.head_dim).transpose(1, 2), cos, sin)
            k = self.rotate(k.view(rows, seq, self.n_kv, self.head_dim).transpose(1, 2), cos, sin)
            k_cache[:, :, start:end] = k
            v_cache[:, :, start:end] = v.view(rows, seq, self.n_kv, self.head_dim).transpose(1, 2)
            att = F.scaled_dot_product_attention(
                q, k_cache[:, :, :end], v_cache[:, :, :end], attn_mask=mask, enable_gqa=self.n_kv != self.n_heads
            )
            x = x + F.linear(att.transpose(1, 2).reshape(rows, seq, self.q_size), w_o, b_o)
            gate, up = F.linear(self.norm(x, ln2), w_gu, b_gu).split(self.intermediate, dim=-1)
            x = x + F.linear(F.silu(gate) * up, w_down, b_down)
        return self.norm(x[:, -1], self.final_norm)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.lm_head, self.lm_head_bias).float()


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches
    ``top_p`` (at least one), set the rest to -inf."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p  # mass strictly before this token already reaches top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


@torch.no_grad()
def sample(
    model,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    compact_ratio: float = 0.75,
    compile: bool = False,
    on_batch=None,
) -> list[Sample]:
    """Sample a continuation of every prompt (token ids, already rendered and tokenised).

    Args:
        max_new_tokens: response budget per prompt.
        temperature: 0 for greedy decoding (log-probs then of the plain softmax), else sample from
            softmax(logits / temperature), restricted to the ``top_p`` nucleus.
        batch_size: rows decoded together; prompts are sorted by length first.
        seed: seeds a private ``torch.Generator`` (the global RNG is untouched); the samples are
            reproducible for fixed prompts, batch size and seed.
        compact_ratio: drop finished rows from the batch (and its cache) once fewer than this
            share of its rows are still decoding.
        compile: run the one-token decoding step through ``torch.compile`` (dynamic shapes).
            ``benchmarks/rollout_engines.py`` measures what it gives; off by default.
        on_batch: called as ``on_batch(done, total)`` after each batch (progress).
    Returns:
        One :class:`Sample` per prompt, in input order.
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"the fast engine cannot run this model: {reason}; use engine 'hf'")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token")
    decoder = _Decoder(model)
    step = torch.compile(decoder.forward, dynamic=True) if compile else decoder.forward
    generator = torch.Generator(device=decoder.embed.device).manual_seed(seed)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    out: list[Sample | None] = [None] * len(prompt_ids)
    for done, batch in enumerate(batches, 1):
        for i, s in zip(
            batch,
            _sample_batch(
                decoder,
                [prompt_ids[i] for i in batch],
                max_new_tokens,
                eos_token_id,
                pad_token_id,
                temperature,
                top_p,
                generator,
                compact_ratio,
                step,
            ),
        ):
            out[i] = s
        if on_batch is not None:
            on_batch(done, len(batches))
    return out  # type: ignore[return-value]


def _sample_batch(
    decoder: _Decoder,
    prompts: Sequence[Sequence[int]],
    budget: int,
    eos: int | None,
    pad: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    compact_ratio: float,
    step_fn,
) -> list[Sample]:
    rows = len(prompts)
    device = decoder.embed.device
    width = max(len(p) for p in prompts)
    lengths = torch.tensor([len(p) for p in prompts])
    ids = torch.full((rows, width), pad, dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
    ids, lengths = ids.to(device), lengths.to(device)
    # Left padding: row r's prompt occupies columns [width - len, width); its positions start at 0.
    key_valid = torch.arange(width, device=device)[None, :] >= (width - lengths)[:, None]
    positions = (key_valid.long().cumsum(-1) - 1).clamp(min=0)
    total = width + budget
    dtype = decoder.embed.dtype
    decoder.rope_table(total)
    caches = [
        (
            torch.zeros(rows, decoder.n_kv, total, decoder.head_dim, dtype=dtype, device=device),
            torch.zeros(rows, decoder.n_kv, total, decoder.head_dim, dtype=dtype, device=device),
        )
        for _ in decoder.layers
    ]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    # A padding query attends itself only (never read later): no all-masked softmax rows.
    prefill_mask = (causal[None] & key_valid[:, None, :]) | torch.eye(width, dtype=torch.bool, device=device)[None]
    hidden = decoder.forward(ids, positions, caches, 0, prefill_mask[:, None])

    tokens = torch.full((rows, budget), pad, dtype=torch.long, device=device)
    logps = torch.zeros((rows, budget), dtype=torch.float32, device=device)
    stopped_at = torch.full((rows,), -1, dtype=torch.long, device=device)  # step of each row's end-of-turn token
    active = torch.arange(rows, device=device)  # original row of each batch row still in the cache
    live = torch.ones(rows, dtype=torch.bool, device=device)  # per batch row: not yet stopped
    next_pos = lengths.clone()
    valid = torch.ones(rows, total, dtype=torch.bool, device=device)
    valid[:, :width] = key_valid
    padded = bool((~key_valid).any())
    for step in range(budget):
        logits = decoder.logits(hidden)
        if temperature == 0:
            logp = logits.log_softmax(-1)
            tok = logits.argmax(-1)
        else:
            scaled = logits / temperature
            logp = scaled.log_softmax(-1)
            pick = scaled if top_p >= 1 else _top_p_filter(scaled, top_p)
            tok = torch.multinomial(pick.softmax(-1), 1, generator=generator).squeeze(-1)
        tokens[active, step] = tok
        logps[active, step] = logp.gather(-1, tok[:, None]).squeeze(-1)
        if eos is not None:
            hit = live & (tok == eos)
            if bool(hit.any()):
                stopped_at[active[hit]] = step
                live = live & ~hit
        n_live = int(live.sum())
        if n_live == 0 or step == budget - 1:
            break
        if n_live < compact_ratio * len(active):
            keep = live.nonzero().squeeze(-1)
            caches = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in caches]
            active, tok, next_pos, valid, live = active[keep], tok[keep], next_pos[keep], valid[keep], live[keep]
        column = width + step
        mask = valid[:, None, None, : column + 1] if padded else None
        hidden = step_fn(tok[:, None], next_pos[:, None], caches, column, mask)
        next_pos = next_pos + 1

    out = []
    tokens, logps, stopped_at = tokens.cpu(), logps.cpu(), stopped_at.cpu()
    for r in range(rows):
        stop = int(stopped_at[r])
        if stop >= 0:
            ids_r, lp, reason = tokens[r, : stop + 1], logps[r, : stop + 1], "stop"
        else:
            ids_r, lp, reason = tokens[r], logps[r], "length"
        out.append(Sample(ids_r.tolist(), lp.numpy().copy(), reason))
    return out


class FastEngine:
    """:func:`sample` as a ``base.RolloutEngine`` (``options``: ``compact_ratio``, ``compile``)."""

    def unsupported_reason(self, model) -> str | None:
        return unsupported_reason(model)

    def sample(
        self,
        model,
        prompt_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        eos_token_id: int | None,
        pad_token_id: int,
        temperature: float,
        top_p: float,
        batch_size: int,
        seed: int,
        options: dict | None = None,
        on_progress: ProgressFn | None = None,
        show_bar: bool = False,
    ) -> list[Sample]:
        return sample(
            model,
            prompt_ids,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            temperature=temperature,
            top_p=top_p,
            batch_size=batch_size,
            seed=seed,
            on_batch=None
            if on_progress is None
            else lambda done, total: on_progress(done, total, "generation batches"),
            **(options or {}),
        )
