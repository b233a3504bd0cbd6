"""The typed configuration of one PRIME iteration (``params:prime``).

One flat dataclass, validated when Kedro builds it (before any node runs): every error names the
parameter, the bad value and what is allowed. Defaults are the tiny world's; the reference run's
values are in ``conf/eurus7b/parameters.yml`` (PRIME_REFERENCE.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from eurus_prime.core.advantages import ADVANTAGE_ESTIMATORS as _ESTIMATOR_REGISTRY
from eurus_prime.core.advantages import NEEDS_CRITIC
from eurus_prime.core.kl import KL_ESTIMATORS
from eurus_prime.core.rewards import PRM_LOSSES
from eurus_prime.engines.rollout.base import ENGINES as _ENGINE_REGISTRY
from eurus_prime.engines.train.base import TRAINER_BACKENDS as _TRAINER_REGISTRY

FILTER_MODES = ("regenerate", "single_draw", "fixed_batch")
PRM_TIMINGS = ("after", "before")
REF_TYPES = ("freeze", "policy")
GRANULARITIES = ("token", "whole")
NORMALISATIONS = ("batch_norm", "none")
NONFINITE_ACTIONS = ("skip", "stop")
PROCESS_REWARDS = ("implicit", "oracle", "oracle_progress")
ADVANTAGE_ESTIMATORS = tuple(_ESTIMATOR_REGISTRY)  # eurus_prime.core.advantages.ADVANTAGE_ESTIMATORS
KL_PLACES = ("reward", "loss")
ROLLOUT_ENGINES = tuple(_ENGINE_REGISTRY)  # eurus_prime.engines.rollout.base.ENGINES
TRAINER_BACKENDS = tuple(_TRAINER_REGISTRY)  # eurus_prime.engines.train.base.TRAINER_BACKENDS


@dataclass(frozen=True)
class PrimeConfig:
    """Hyperparameters of one PRIME iteration (one RL step)."""

    seed: int = 0
    """Base seed; each iteration derives its own seeds from (seed, iteration, stage)."""
    # --- sampling and rollout ---
    prompts_per_step: int = 64
    """B: prompt groups per RL step (the batch after filtering)."""
    oversample_factor: float = 2.0
    """Prompts drawn per step = ceil(B * oversample_factor); the surplus covers filtered groups."""
    samples_per_prompt: int = 4
    """n: responses per prompt (RLOO needs n >= 2)."""
    max_prompt_length: int = 256
    """Longest prompt in tokens; a longer one is an error naming its prompt_id."""
    max_response_length: int = 128
    """Response budget in tokens; longer responses are truncated (finish_reason ``length``)."""
    temperature: float = 1.0
    """Sampling temperature of rollouts."""
    top_p: float = 1.0
    """Nucleus sampling threshold of rollouts."""
    generation_batch_size: int = 256
    """Sequences per generation batch."""
    rollout_chunk: int | None = None
    """Sample the rollouts in chunks of this many completions, each with its own seed, so the
    chunks can be spread over an SPMD campaign's ranks (``torchrun``) with the same samples on any
    number of ranks (one process included). None: one call, every rank samples everything."""
    rollout_engine: str = "fast"
    """``fast``: the KV-cache sampler of ``engines/rollout/fast.py`` (Llama/Qwen2 models; it returns the
    sampling log-probs); ``hf``: Hugging Face ``generate`` (any causal LM; ``fast`` falls back to it
    for other architectures, with a warning); ``vllm``: vLLM (GPU machines, ``engines/rollout/vllm.py``,
    options in ``prime.vllm``; it returns the sampling log-probs at temperature 1)."""
    reuse_sampling_logprobs: bool = True
    """Use the rollout engine's sampling log-probs as the old-policy log-probs, skipping that scoring
    pass, when they are the policy's own (temperature 1, top-p 1, engine ``fast``). Each iteration
    first checks them against a teacher-forced forward pass over its 16 longest rows; beyond
    ``logprob_reuse_tol`` the full pass runs and a warning says so."""
    logprob_reuse_tol: float = 1e-3
    """Largest |sampling - teacher-forced| log-prob accepted by that check."""
    # --- filter ---
    filter_low: float = 0.2
    """Keep a prompt iff filter_low <= its accuracy over n samples <= filter_high (inclusive)."""
    filter_high: float = 0.8
    filter_mode: str = "regenerate"
    """``regenerate`` (the reference's loop): train on passing groups only; while fewer than B
    pass, the training loop draws M more prompts, generates, verifies and filters again, up to
    ``max_draws_per_iteration`` draws, then trains on the first B. ``single_draw``: one draw,
    train on the passing groups of it (drawing again only when none passes). ``fixed_batch``
    (verl): one draw, B groups, passing ones first, then failing ones fill the batch."""
    max_draws_per_iteration: int = 4
    """Most draws of one iteration (``regenerate``; in every mode the limit on redraws when no
    group passes, after which training stops, reporting the accuracy distribution)."""
    buffer_max_staleness: int = 1
    """In-band groups beyond B (``surplus``) go to the ``group_buffer`` table; the next iterations'
    first draw takes them first, regenerated with the current policy (only the current policy's
    samples are trained on), when they were made at most this many iterations ago. 0: no buffer."""
    # --- implicit PRM ---
    beta: float = 0.05
    """PRM temperature beta in r_t = beta * (log pi_phi - log pi_ref)."""
    granularity: str = "token"
    """``token``: a reward on every response token; ``whole``: the sum on the last token."""
    normalisation: str = "batch_norm"
    """``batch_norm``: divide by the largest |process return| in the batch; ``none``."""
    ref_type: str = "freeze"
    """``freeze``: pi_ref is the SFT model; ``policy``: the policy's old log-probs."""
    prm_update: str = "after"
    """``after`` (the reference): rewards come from each mini-batch's forward before its optimizer
    step; ``before`` (verl): update the PRM over the batch, then score with the updated PRM."""
    prm_lr: float = 1e-4
    prm_weight_decay: float = 0.0
    prm_grad_clip: float = 10.0
    prm_mini_batch: int = 256
    """Responses per PRM optimizer step."""
    prm_loss: str = "ce"
    """``ce`` (the reference): binary cross-entropy of sigmoid(beta * sum_t q) against the outcome;
    ``dpo`` (verl recipe/prime ``loss_type: dpo``): each sample's score against the mean score of the
    group's samples with the other outcome, those taken from the PRM before its update
    (``core.rewards.prm_dpo_loss``)."""
    prm_freeze_after: int | None = None
    """None: an online PRM, updated every iteration (the paper's default). k: the PRM updates in
    iterations 0..k-1 only, then stays frozen (the paper's offline-PRM ablation, section 5.2: a PRM
    trained on the early policy's rollouts, then fixed)."""
    # --- advantages ---
    advantage_estimator: str = "rloo"
    """``rloo``: PRIME's leave-one-out returns on process and outcome rewards, whitened;
    ``rft``: rejection-sampling fine-tuning, weight 1 on accepted responses' tokens and 0 elsewhere
    (use with ``filter_low`` just above 0 and ``filter_high: 1`` to keep every group with an
    accepted sample; process rewards are ignored); ``reinforce`` (batch-mean outcome baseline),
    ``reinforce_pp`` (REINFORCE++: returns whitened over the batch), ``grpo`` (group mean/std of
    the outcome), each plus the process returns; ``prm_value`` (the PRM's cumulative reward as the
    value, the outcome as the reward); ``gae`` (PPO: a learned critic's values, GAE with
    ``gae_gamma``/``gae_lambda``; the iteration runs the ``prime_iteration_ppo`` pipeline, which adds
    ``compute_values`` and ``update_critic``). Formulas: ``core/advantages.py``."""
    process_reward: str = "implicit"
    """The process rewards the advantages use: ``implicit`` (the PRM's, PRIME) or, for worlds with
    a step checker (the chains world), a ground-truth one from each rollout's first wrong step:
    ``oracle`` (-1 on the tokens blamed for it) or ``oracle_progress`` (+1/n_steps on each step
    before it); see ``prm.oracle_rewards``. The PRM is still scored and trained, so its quality
    is measured either way."""
    process_coef: float = 1.0
    """Weight of the process (implicit PRM) returns; 0 gives the outcome-only RLOO baseline."""
    outcome_coef: float = 1.0
    """Weight of the outcome (verifier) returns."""
    process_gamma: float = 1.0
    """Discount of the process returns (the reference: 1, every process reward reaches all earlier
    tokens); 0 keeps each token's process reward on that token (a credit-localisation ablation)."""
    gae_gamma: float = 1.0
    """``gae``: discount of the token rewards (verl's default 1)."""
    gae_lambda: float = 1.0
    """``gae``: GAE's lambda (verl's default 1: the advantage is the return minus the value)."""
    critic_lr: float = 1e-3
    """``gae``: the critic's AdamW learning rate (verl runs its critic at 10x the actor's rate)."""
    value_clip: float = 0.5
    """``gae``: a value may move this far from the value the returns were computed with before the
    clipped term of the value loss holds (verl's ``cliprange_value``)."""
    # --- policy update (PPO) ---
    policy_lr: float = 1e-4
    policy_weight_decay: float = 0.01
    policy_grad_clip: float = 1.0
    clip_ratio: float = 0.2
    entropy_coef: float = 0.0
    """The policy loss is pg_loss - entropy_coef * (token-mean entropy of the policy)."""
    kl_coef: float = 0.0
    """Weight of the KL of the policy to the reference model (pi_ref); 0 (the reference run): off."""
    kl_in: str = "reward"
    """Where the KL goes: ``reward`` subtracts kl_coef * KL(old policy, ref) per token from the
    rewards before the returns; ``loss`` adds kl_coef * token-mean KL(policy, ref) to the policy loss."""
    kl_estimator: str = "k1"
    """Per-token KL estimate (``core.kl.kl_penalty``): ``k1`` logp - ref, ``k2`` (logp - ref)^2 / 2,
    ``k3`` exp(ref - logp) - (ref - logp) - 1."""
    ppo_epochs: int = 1
    ppo_mini_batch: int = 64
    """Responses per policy optimizer step (1 epoch over B*n responses = B*n/this steps)."""
    micro_batch: int = 64
    """Rows per forward/backward pass (gradient accumulation inside a mini-batch)."""
    micro_batch_tokens: int | None = None
    """Memory-aware micro-batching: also cap each forward/backward pass (scoring and updates) at
    this many packed tokens, rows x (longest prompt + longest response), padding included; rows
    are sorted by length and cut where the next one would pass the cap, so short responses go
    many at a time and long ones few (``prime.batch.budget_micro_batches``). None: rows only.
    The scoring passes and the PRM update (a mean over sequences) do not depend on the split, so
    for them the cap changes memory and time only. The PPO loss is, as in the reference, a token
    mean per micro-batch weighted by rows, so there (as with ``micro_batch`` itself) a different
    split weighs tokens slightly differently; its micro-batches keep the shuffled order."""
    score_device: str | None = None
    """Where the scoring passes (old policy, reference, PRM) run: None where each model is (the
    CPU default); e.g. ``cuda:0`` moves each model there for its pass and back to host memory
    after, so the GPU holds one model at a time (``eurus-prime plan``'s scoring phase)."""
    gradient_checkpointing: bool = False
    """Recompute each transformer layer in the backward pass of the PRM and policy updates (HF
    ``gradient_checkpointing_enable``): activations of one layer instead of all; needed at 7B."""
    vllm: dict[str, Any] = field(default_factory=dict)
    """``engines.rollout.vllm.VllmOptions`` for ``rollout_engine: vllm``: gpu_memory_utilization,
    tensor_parallel_size, dtype, max_model_len, enforce_eager, extra."""
    trainer_backend: str = "torch"
    """What takes the PRM and policy optimizer steps (``engines/train/``): ``torch`` (one
    process, AdamW) or ``deepspeed`` (ZeRO 0-3, CPU offload, bf16, several ranks; ``deepspeed``)."""
    deepspeed: dict[str, Any] = field(default_factory=dict)
    """``engines.trainer.DeepSpeedOptions`` for ``trainer_backend: deepspeed``: zero_stage,
    offload_optimizer, offload_param, bf16, extra_config."""
    nonfinite: str = "skip"
    """A PRM or policy mini-batch whose loss or gradient norm is NaN/inf: ``skip`` zeroes its
    gradients, takes no optimizer step (weights and AdamW moments untouched), marks the stats row
    ``skipped`` and logs a warning; ``stop`` raises ``NonFiniteError``. Either way a checkpoint with
    a non-finite parameter is never returned."""
    # --- evaluation ---
    eval_every: int = 1
    """Evaluate the updated policy after iteration 0 and every this many iterations (iterations
    k-1, 2k-1, ...; 0: never). On other iterations the eval tables are written empty."""
    eval_max_items: int | None = 500
    """Held-out prompts evaluated (None: the whole split)."""

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> None:
            raise ValueError(f"prime.{name} = {getattr(self, name)!r} is invalid: {allowed}")

        for name in (
            "prompts_per_step",
            "max_prompt_length",
            "max_response_length",
            "generation_batch_size",
            "prm_mini_batch",
            "ppo_epochs",
            "ppo_mini_batch",
            "micro_batch",
        ):
            if int(getattr(self, name)) < 1:
                bad(name, "must be an integer >= 1")
        if self.rollout_chunk is not None and int(self.rollout_chunk) < 1:
            bad("rollout_chunk", "must be an integer >= 1, or null for one sampling call")
        if self.micro_batch_tokens is not None and int(self.micro_batch_tokens) < 1:
            bad("micro_batch_tokens", "must be an integer >= 1, or null for no token cap")
        if self.samples_per_prompt < 2:
            bad("samples_per_prompt", "RLOO needs at least 2 samples per prompt")
        if self.max_draws_per_iteration < 1:
            bad("max_draws_per_iteration", "must be >= 1 (1: one draw per iteration)")
        if self.buffer_max_staleness < 0:
            bad("buffer_max_staleness", "must be >= 0 (0: no group buffer)")
        if self.oversample_factor < 1:
            bad("oversample_factor", "must be >= 1")
        if self.temperature <= 0:
            bad("temperature", "rollouts sample; must be > 0")
        if not 0 < self.top_p <= 1:
            bad("top_p", "must be in (0, 1]")
        for name in ("filter_low", "filter_high"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, "must be in [0, 1]")
        if self.filter_low > self.filter_high:
            raise ValueError(
                f"prime.filter_low = {self.filter_low} > prime.filter_high = {self.filter_high}: the band is reversed"
            )
        for name, allowed in (
            ("filter_mode", FILTER_MODES),
            ("prm_update", PRM_TIMINGS),
            ("ref_type", REF_TYPES),
            ("granularity", GRANULARITIES),
            ("normalisation", NORMALISATIONS),
            ("nonfinite", NONFINITE_ACTIONS),
            ("rollout_engine", ROLLOUT_ENGINES),
            ("trainer_backend", TRAINER_BACKENDS),
            ("process_reward", PROCESS_REWARDS),
            ("advantage_estimator", ADVANTAGE_ESTIMATORS),
            ("prm_loss", PRM_LOSSES),
            ("kl_in", KL_PLACES),
            ("kl_estimator", KL_ESTIMATORS),
        ):
            if getattr(self, name) not in allowed:
                bad(name, f"valid values are {list(allowed)}")
        for name in ("beta", "prm_lr", "policy_lr", "critic_lr", "value_clip", "clip_ratio", "logprob_reuse_tol"):
            if getattr(self, name) <= 0:
                bad(name, "must be > 0")
        for name in (
            "prm_weight_decay",
            "policy_weight_decay",
            "prm_grad_clip",
            "policy_grad_clip",
            "entropy_coef",
            "process_coef",
            "outcome_coef",
            "kl_coef",
        ):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        for name in ("process_gamma", "gae_gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must be in [0, 1]")
        if self.process_gamma != 1.0 and self.advantage_estimator != "rloo":
            bad(
                "process_gamma",
                f"only the rloo estimator discounts its process returns "
                f"(prime.advantage_estimator = {self.advantage_estimator!r}); leave it at 1",
            )
        if self.kl_coef > 0 and self.ref_type == "policy":
            raise ValueError(
                f"prime.kl_coef = {self.kl_coef} needs a reference model, but prime.ref_type = 'policy' "
                "makes the reference log-probs the old policy's (the KL would be one to the old "
                "policy); use ref_type: freeze, or kl_coef: 0"
            )
        if self.kl_coef > 0 and self.kl_in == "reward" and self.advantage_estimator == "rft":
            raise ValueError(
                f"prime.kl_coef = {self.kl_coef} with prime.kl_in = 'reward': "
                "prime.advantage_estimator = 'rft' has no reward to subtract the KL from; "
                "use kl_in: loss"
            )
        if self.process_coef == 0 and self.outcome_coef == 0:
            raise ValueError("prime.process_coef and prime.outcome_coef are both 0: nothing to learn from")
        from eurus_prime.engines.rollout.vllm import VllmOptions  # noqa: PLC0415
        from eurus_prime.engines.train.deepspeed_trainer import DeepSpeedOptions  # noqa: PLC0415

        DeepSpeedOptions.coerce(self.deepspeed)  # names the bad key or value
        try:
            VllmOptions.coerce(self.vllm)
        except ValueError as err:
            raise ValueError(f"prime.{err}") from err
        if self.prm_freeze_after is not None and self.prm_freeze_after < 0:
            bad("prm_freeze_after", "must be >= 0 (the iterations the PRM trains in), or null for an online PRM")
        if self.eval_every < 0:
            bad("eval_every", "must be >= 0 (0: never evaluate)")
        if self.eval_max_items is not None and self.eval_max_items < 1:
            bad("eval_max_items", "must be >= 1 or null (the whole split)")

    @classmethod
    def coerce(cls, value: PrimeConfig | dict[str, Any]) -> PrimeConfig:
        """``params:prime`` as Kedro hands it over: already typed, or the raw mapping."""
        if isinstance(value, dict) and "max_resamples" in value:
            raise ValueError(
                f"prime.max_resamples = {value['max_resamples']!r} was replaced by prime.max_draws_per_iteration "
                f"(draws, counting the first: max_resamples + 1 = {int(value['max_resamples']) + 1})"
            )
        return cls(**value) if isinstance(value, dict) else value

    @property
    def engine_options(self) -> Any:
        """The options of the chosen rollout engine: ``vllm`` for the vllm engine, else none."""
        return self.vllm if self.rollout_engine == "vllm" else None

    def prm_frozen(self, iteration: int) -> bool:
        """Whether the PRM takes no update at ``iteration`` (``prm_freeze_after``)."""
        return self.prm_freeze_after is not None and iteration >= self.prm_freeze_after

    @property
    def needs_critic(self) -> bool:
        """Whether the estimator learns a value model (``gae``): the iteration then runs
        ``prime_iteration_ppo``."""
        return self.advantage_estimator in NEEDS_CRITIC

    @property
    def pipeline(self) -> str:
        """The registered pipeline one iteration with this configuration runs."""
        return "prime_iteration_ppo" if self.needs_critic else "prime_iteration"

    @property
    def prompts_drawn(self) -> int:
        """Prompts drawn per iteration (B * oversample_factor, rounded up)."""
        return math.ceil(self.prompts_per_step * self.oversample_factor - 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_seed(cfg: PrimeConfig, iteration: int, stage: str) -> int:
    """A seed per (base seed, iteration, stage), stable across runs and Python versions."""
    h = 0
    for ch in f"{cfg.seed}/{iteration}/{stage}":
        h = (h * 131 + ord(ch)) % (2**31 - 1)
    return h


def should_evaluate(cfg: PrimeConfig, iteration: int) -> bool:
    """Evaluate at iteration 0 and after every ``eval_every``-th iteration (iterations
    eval_every-1, 2*eval_every-1, ...), so a run of a multiple of eval_every iterations ends
    evaluated; never when ``eval_every`` is 0."""
    return cfg.eval_every > 0 and (iteration == 0 or (iteration + 1) % cfg.eval_every == 0)
