"""``eurus-prime plan``: memory per GPU and GPU-hours of a run, from its config, before launching.

Everything here is arithmetic over the environment's parameters: ``prime`` (batch, lengths,
engines, ``deepspeed`` and ``vllm`` options) and a ``plan`` block (the model's shape, the machine,
and the throughput assumptions, each one a parameter the user can correct from a measured run).
Nothing is loaded or launched.

**Memory.** The pipeline is one process: a long-lived vLLM engine spans ``vllm.tensor_parallel_size``
GPUs and holds ``gpu_memory_utilization`` of each for the whole run; the trainer (policy and PRM
updates, one after the other) and the scoring passes (reference, PRM, old policy) run on GPU 0
with whatever vLLM leaves there; with ``deepspeed.num_procs`` N the updates run on GPUs 0..N-1
(``engines/train/ranks.py``). Per phase:

- generation: vLLM's share = weights (2 bytes x params / TP) + KV cache (the rest of its share);
- scoring: one model's bf16 weights + one micro-batch's activations + one chunk of logits;
- update (DeepSpeed on ``num_procs`` ranks, GPUs 0..N-1; torch: GPU 0): bf16 weights (sharded
  over the ranks at ZeRO-3), bf16 gradients (sharded at ZeRO >= 2), fp32 master weights and AdamW
  moments (12 bytes per parameter, sharded at ZeRO >= 1; in CPU RAM with ``offload_optimizer``);
  activations: per layer input only with ``gradient_checkpointing``, else the full stack.

**Time.** Generation: generated tokens / (``rollout_tokens_per_s_per_gpu`` x TP GPUs). Scoring
and updates: 2 x params FLOPs per token forward, 4 x backward (+2 recompute with checkpointing),
at ``train_mfu`` of the GPUs' bf16 peak: scoring on GPU 0, updates on the ranks. Checkpoint I/O
at ``disk_gb_per_s``: every ``train.save_every``-th iteration the catalog writes the policy and
the PRM (and the critic) with their AdamW state (``optimizer_bytes_per_param``); the resident
slots (``datasets/resident.py``) serve every later load from memory, so the stages read nothing; with
``deepspeed.num_procs`` > 1 each update also makes the launcher's round trip through its work
folder (``engines/train/ranks.py``: the driver writes weights and state, every rank reads the
weights, rank 0 writes both back, the driver reads them) and starts the ranks afresh
(``process_start_s``). Each line names the GPUs it keeps busy; the rest of the job's GPUs wait.

Beside today's step, the plan prints the step of the SPMD target: every phase spread over all
GPUs (vLLM on every rank, data-parallel scoring) and no launcher round trip or start-up per
update. A torchrun campaign (``engines/spmd.py``) is that on CPU today (resident data-parallel
updates, sampling and scoring; DeepSpeed engines kept for the campaign); vLLM per rank, which a
GPU campaign needs, is not built yet. GPU-hours count every GPU the job holds, idle or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from eurus_prime.engines.rollout.vllm import VllmOptions
from eurus_prime.engines.train.deepspeed_trainer import DeepSpeedOptions
from eurus_prime.prime.config import PrimeConfig

GIB = 1024**3


@dataclass
class ModelShape:
    """The policy/PRM/reference architecture (all three are the same model)."""

    params: float = 7.62e9
    layers: int = 28
    hidden: int = 3584
    heads: int = 28
    kv_heads: int = 4
    head_dim: int = 128
    vocab: int = 152064


@dataclass
class PlanConfig:
    """``plan:`` in parameters.yml."""

    model: ModelShape = field(default_factory=ModelShape)
    gpus_per_node: int = 8
    nodes: int = 1
    gpu_memory_gib: float = 80.0
    gpu_bf16_tflops: float = 989.0
    """Dense bf16 peak per GPU (H100 SXM: 989)."""
    cpu_memory_gib: float = 1024.0
    train_mfu: float = 0.35
    """Fraction of the bf16 peak the scoring and update passes reach (assumed; correct it from a run)."""
    rollout_tokens_per_s_per_gpu: float = 2500.0
    """vLLM decode throughput per GPU for this model at the batch of a step (assumed; correct it
    from a run: generated tokens / generate_rollouts seconds / TP)."""
    mean_response_tokens: float = 1500.0
    """Mean response length (assumed; the rollouts table's ``response_length`` mean after a step)."""
    mean_prompt_tokens: float = 300.0
    train_prompts: int = 455_000
    """Training prompts (one epoch): Eurus-2-RL-Data has ~455k math + 27k code rows."""
    activation_overhead_gib: float = 4.0
    """CUDA context, allocator fragmentation and workspace per GPU."""
    disk_gb_per_s: float = 2.0
    """Checkpoint read and write bandwidth, GB/s (a local NVMe; a network filesystem is often less)."""
    optimizer_bytes_per_param: float = 12.0
    """The AdamW state saved with a checkpoint: fp32 master weights and two moments (DeepSpeed)."""
    process_start_s: float = 60.0
    """Starting the ranks of one update (``torchrun``, imports, process group, DeepSpeed engine;
    assumed; correct it from a run's launcher log)."""

    @classmethod
    def coerce(cls, value: dict | None) -> PlanConfig:
        value = dict(value or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"plan has unknown keys {unknown}; valid keys are {sorted(names)}")
        model = value.pop("model", {}) or {}
        bad = sorted(set(model) - {f.name for f in fields(ModelShape)})
        if bad:
            raise ValueError(
                f"plan.model has unknown keys {bad}; valid keys are {sorted(f.name for f in fields(ModelShape))}"
            )
        return cls(model=ModelShape(**model), **value)


@dataclass
class Line:
    phase: str
    item: str
    gib: float | None  # None: a note under the line before
    where: str = "GPU 0"


@dataclass
class Phase:
    """One line of a step's time: its seconds and the GPUs it keeps busy (the rest wait)."""

    name: str
    seconds: float
    gpus: int


@dataclass
class Plan:
    lines: list[Line]
    peaks: dict[str, float]
    cpu_gib: float
    step_hours: float
    gpu_hours_per_step: float
    steps_per_epoch: int
    gpu_hours_per_epoch: float
    seconds: dict[str, float]
    warnings: list[str]
    gpus: int
    phases: list[Phase] = field(default_factory=list)
    """Today's step, line by line (``seconds`` is the same by name)."""
    resident: list[Phase] = field(default_factory=list)
    """The same step on the SPMD target (every phase data-parallel; partly built)."""
    notes: list[str] = field(default_factory=list)

    @property
    def resident_step_hours(self) -> float:
        return sum(x.seconds for x in self.resident) / 3600

    def render(self) -> str:
        out = ["Memory per GPU (GiB), by phase:"]
        for phase in ("generation", "scoring", "update"):
            out.append(f"  {phase}:")
            for line in (x for x in self.lines if x.phase == phase):
                if line.gib is None:
                    out.append(f"      {line.item}")
                else:
                    out.append(f"    {line.item:<44}{line.gib:>8.1f}  {line.where}")
            out.append(f"    {'peak on GPU 0':<44}{self.peaks[phase]:>8.1f}")
        out.append(f"  CPU RAM (optimizer offload, checkpoints in memory): {self.cpu_gib:.0f} GiB")
        out.append(f"Time per step (seconds, GPUs busy):{'today':>33}{'SPMD target':>18}")
        resident = {x.name: x for x in self.resident}
        for x in self.phases:
            r = resident.get(x.name)
            alt = f"{r.seconds:>10.0f}  {r.gpus:>2}/{self.gpus}" if r is not None else f"{'-':>10}"
            out.append(f"    {x.name:<60}{x.seconds:>6.0f}  {x.gpus:>2}/{self.gpus}{alt}")
        step_s, resident_s = self.step_hours * 3600, self.resident_step_hours * 3600
        out.append(f"    {'step':<60}{step_s:>6.0f}{'':>{3 + 2 * len(str(self.gpus))}}{resident_s:>10.0f}")
        out += [f"      {n}" for n in self.notes]
        out.append(
            f"GPU-hours per step: {self.gpu_hours_per_step:.2f} ({self.gpus} GPUs held); on the SPMD target: "
            f"{self.resident_step_hours * self.gpus:.2f}"
        )
        out.append(
            f"Steps per epoch: {self.steps_per_epoch}; GPU-hours per epoch: {self.gpu_hours_per_epoch:,.0f} "
            f"({self.gpu_hours_per_epoch / self.gpus / 24:.1f} days on {self.gpus} GPUs)"
        )
        out += [f"WARNING: {w}" for w in self.warnings] or ["Fits: every phase is under the GPU's memory."]
        return "\n".join(out)


def make_plan(prime: PrimeConfig | dict, plan: dict | PlanConfig | None, save_every: int = 1) -> Plan:
    """The memory and time plan of one PRIME step under ``prime`` on the machine in ``plan``, with
    checkpoints written every ``save_every`` iterations (``train.save_every``)."""
    cfg = PrimeConfig.coerce(prime) if isinstance(prime, dict) else prime
    p = plan if isinstance(plan, PlanConfig) else PlanConfig.coerce(plan)
    m = p.model
    ds = DeepSpeedOptions.coerce(cfg.deepspeed)
    vl = VllmOptions.coerce(cfg.vllm)
    gpus = p.gpus_per_node * p.nodes
    gib = GIB
    warnings: list[str] = []
    bf16 = 2 * m.params / gib
    seq = p.mean_prompt_tokens + min(p.mean_response_tokens, cfg.max_response_length)
    longest = cfg.max_prompt_length + cfg.max_response_length

    # --- generation: vLLM on TP GPUs (GPU 0 among them)
    tp = vl.tensor_parallel_size if cfg.rollout_engine == "vllm" else 0
    lines: list[Line] = []
    vllm_share = vl.gpu_memory_utilization * p.gpu_memory_gib if tp else 0.0
    if tp:
        if tp > gpus:
            warnings.append(f"prime.vllm.tensor_parallel_size={tp} is more than the {gpus} GPUs in plan")
        weights = bf16 / tp
        kv_per_token = 2 * m.layers * m.kv_heads * m.head_dim * 2 / tp  # K and V, bf16, per GPU
        kv = vllm_share - weights - 1.0  # ~1 GiB of vLLM's own activations and graphs
        tokens = kv * gib / kv_per_token
        lines += [
            Line("generation", f"vLLM weights (bf16 / TP={tp})", weights, f"GPUs 0-{tp - 1}"),
            Line("generation", "vLLM KV cache", kv, f"GPUs 0-{tp - 1}"),
            Line(
                "generation",
                f"= {tokens:,.0f} tokens, {tokens / longest:,.0f} sequences of {longest} tokens at once",
                None,
            ),
        ]
        if kv <= 0:
            warnings.append(
                f"vLLM's share ({vllm_share:.0f} GiB) does not hold its weights ({weights:.1f} GiB): raise "
                "prime.vllm.gpu_memory_utilization or tensor_parallel_size"
            )
        elif tokens < longest:
            warnings.append(f"vLLM's KV cache holds {tokens:,.0f} tokens, fewer than one sequence ({longest})")
    gen_peak = vllm_share + p.activation_overhead_gib

    # --- scoring: one bf16 model on GPU 0, a micro-batch, one logits chunk
    # The worst micro-batch: micro_batch rows of the longest sequence, or fewer under a token cap.
    mb_rows = (
        cfg.micro_batch
        if cfg.micro_batch_tokens is None
        else max(1, min(cfg.micro_batch, cfg.micro_batch_tokens // longest))
    )
    act_fwd = mb_rows * longest * m.hidden * 2 * 4 / gib  # a few live (rows, len, hidden) bf16 tensors
    chunk = 2**24 * 4 * 2 / gib  # engines.logprobs chunk_logits floats, logits and softmax
    lines += [
        Line("scoring", "vLLM (resident)", vllm_share),
        Line("scoring", "one model's bf16 weights (ref, PRM or policy)", bf16),
        Line("scoring", f"activations ({mb_rows} row{'s' * (mb_rows != 1)} x {longest} tokens)", act_fwd),
        Line("scoring", "one chunk of logits", chunk),
    ]
    score_peak = vllm_share + bf16 + act_fwd + chunk + p.activation_overhead_gib

    # --- update: DeepSpeed on `ranks` GPUs (ZeRO shards what its stage says), or torch on GPU 0
    use_ds = cfg.trainer_backend == "deepspeed"
    ranks = (int(ds.num_procs) * (p.nodes if ds.hostfile else 1)) if use_ds else 1
    if ranks > gpus:
        warnings.append(f"prime.deepspeed.num_procs gives {ranks} ranks, more than the {gpus} GPUs in plan")
    stage = ds.zero_stage if use_ds else 0
    weights_u = bf16 / (ranks if stage >= 3 else 1)
    grads = bf16 / (ranks if stage >= 2 else 1)
    optimizer = 12 * m.params / gib / (ranks if stage >= 1 else 1)  # fp32 master + exp_avg + exp_avg_sq
    offload = use_ds and ds.offload_optimizer
    if cfg.gradient_checkpointing:
        act = m.layers * mb_rows * longest * m.hidden * 2 / gib + act_fwd * 4
    else:
        act = m.layers * mb_rows * longest * (34 * m.hidden + 5 * m.heads * longest) / gib
    where = f"GPUs 0-{ranks - 1}" if ranks > 1 else "GPU 0"
    lines += [
        Line("update", "vLLM (resident)", vllm_share),
        Line("update", f"bf16 weights (ZeRO-{stage}, {ranks} rank(s))", weights_u, where),
        Line("update", "bf16 gradients", grads, where),
        Line(
            "update",
            "fp32 master weights + AdamW moments",
            0.0 if offload else optimizer,
            "CPU RAM" if offload else where,
        ),
        Line(
            "update",
            "activations" + (" (layer inputs: checkpointing)" if cfg.gradient_checkpointing else " (no checkpointing)"),
            act,
            where,
        ),
        Line("update", "logits chunk (recomputed in backward)", chunk, where),
    ]
    update_peak = (
        vllm_share + weights_u + grads + (0.0 if offload else optimizer) + act + chunk + p.activation_overhead_gib
    )
    peaks = {"generation": gen_peak, "scoring": score_peak, "update": update_peak}
    for phase, peak in peaks.items():
        if peak > p.gpu_memory_gib:
            warnings.append(f"{phase}: {peak:.0f} GiB on GPU 0 > {p.gpu_memory_gib:.0f} GiB")
    if cfg.trainer_backend != "deepspeed":
        warnings.append(
            "prime.trainer_backend is torch: fp32 AdamW in one process; at 7B use deepspeed with offload_optimizer"
        )
    # CPU: offloaded optimizer (one model at a time) + the checkpoints Kedro holds (policy, PRM,
    # reference in bf16) + the updated model being saved
    cpu = (optimizer * ranks if offload else 0.0) + 4 * bf16
    if cpu > p.cpu_memory_gib:
        warnings.append(f"CPU RAM: {cpu:.0f} GiB > {p.cpu_memory_gib:.0f} GiB")

    # --- time per step
    drawn = cfg.prompts_drawn * cfg.samples_per_prompt
    trained = cfg.prompts_per_step * cfg.samples_per_prompt
    gen_tokens = drawn * min(p.mean_response_tokens, cfg.max_response_length)
    flops_rate = p.gpu_bf16_tflops * 1e12 * p.train_mfu  # one trainer GPU
    fwd = 2 * m.params * trained * seq
    reuse = (
        cfg.reuse_sampling_logprobs
        and cfg.temperature == 1
        and cfg.top_p == 1
        and cfg.rollout_engine in ("fast", "vllm")
    )
    passes = 2 + (0 if reuse else 1)  # reference + PRM (+ old policy)
    bwd = 6 if cfg.gradient_checkpointing else 4
    update_s = (fwd + bwd / 2 * fwd) / flops_rate  # one pass over the batch on one GPU
    models = 3 if cfg.needs_critic else 2  # saved: policy, PRM (, critic)
    every = max(int(save_every), 1)
    weights_b, state_b = 2 * m.params, p.optimizer_bytes_per_param * m.params
    disk = p.disk_gb_per_s * 1e9
    saves = models * (weights_b + state_b)
    relaunched = ranks > 1  # engines/train/ranks.py: a fresh launch and a round trip per update
    # per update: driver writes W + S, every rank reads W (+ its share of S), rank 0 writes W + S,
    # the driver reads W + S
    round_trip = 2 * (weights_b + state_b) + ranks * weights_b + state_b + (weights_b + state_b)
    gen_name, score_name = "generation (vLLM)", f"scoring ({passes} forward passes)"
    prm_name = f"PRM update (forward + backward, {ranks} rank(s))"
    pol_name = f"policy update ({cfg.ppo_epochs} epoch(s), {ranks} rank(s))"
    io_name = f"checkpoint writes ({models} models + AdamW, {p.disk_gb_per_s:g} GB/s, 1 in {every} its.)"

    def compute(generating: int, scoring: int, updating: int) -> list[Phase]:
        """The step's compute and checkpoint writes with each phase spread over that many GPUs."""
        return [
            Phase(gen_name, gen_tokens / (p.rollout_tokens_per_s_per_gpu * generating), generating),
            Phase(score_name, passes * fwd / flops_rate / scoring, scoring),
            Phase(prm_name, update_s / updating, updating),
            Phase(pol_name, cfg.ppo_epochs * update_s / updating, updating),
            Phase(io_name, saves / disk / every, 0),
        ]

    phases = compute(max(tp, 1), 1, ranks)  # today: vLLM on its TP GPUs, scoring on GPU 0
    if relaunched:
        updates = models  # every model trained per iteration is one launch
        phases += [
            Phase(f"launcher round trips ({updates} updates through the work folder)", updates * round_trip / disk, 0),
            Phase(f"process start-up ({updates} launches of {ranks} ranks)", updates * p.process_start_s, 0),
        ]
    resident = compute(gpus, gpus, gpus)
    notes = [
        "today: stage loads read no checkpoint after the first iteration (resident slots)",
        f"SPMD target: vLLM and scoring on all {gpus} GPUs, one launch per campaign (torchrun on CPU "
        "has it, vLLM per rank is not built)",
    ]
    seconds = {x.name: x.seconds for x in phases}
    step_h = sum(seconds.values()) / 3600
    steps = math.ceil(p.train_prompts / cfg.prompts_drawn)
    return Plan(
        lines=lines,
        peaks=peaks,
        cpu_gib=cpu,
        step_hours=step_h,
        gpu_hours_per_step=step_h * gpus,
        steps_per_epoch=steps,
        gpu_hours_per_epoch=step_h * gpus * steps,
        seconds=seconds,
        warnings=warnings,
        gpus=gpus,
        phases=phases,
        resident=resident,
        notes=notes,
    )
