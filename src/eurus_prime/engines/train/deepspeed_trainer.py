"""The ``deepspeed`` trainer backend: a DeepSpeed engine around the model (ZeRO stage 0-3, optional
CPU offload, bf16 or fp32), in this process or as one rank of a data-parallel group
(``engines/train/base.py`` explains the interface, ``engines/train/ranks.py`` starts the ranks).

**Kept engines** (``prime.deepspeed.keep_engine``, on by default). The engine outlives its update:
:meth:`DeepSpeedTrainer.finish` hands back the updated model and a :class:`KeptEngine` as its
optimizer state. The resident slots (``datasets/resident.py``) serve that model to the next update
of the same model, which finds the ``KeptEngine`` with it and continues the engine: no new engine,
no gathering and reloading of the optimizer partitions. The partitions are gathered to rank 0 only
when a checkpoint is written (``engines.train.base.optimizer_state_dict``; every
``train.save_every``-th iteration), a collective that every rank joins
(``datasets/spmd_catalog.py``). Anything else (the model was read from disk, a retried stage,
other options) starts a new engine from the saved state.

The model handed back is what the scoring and rollout passes run on, on each rank alone. At ZeRO
0-2 in fp32 it is the engine's own module (no copy). At ZeRO-3 the engine's module is partitioned
(its forward passes are collectives every rank must join), and in bf16 it holds bf16 weights; so
the stages get a plain fp32 model instead, built at the first update and overwritten in place
with the gathered weights after each one (the weight sync verl makes from its actor to vLLM).
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass, field

import torch

from eurus_prime.engines.train.base import Trainer, _check_tensors, world

log = logging.getLogger(__name__)

GPU_EXTRA = 'pip install -e ".[gpu]"'
DEEPSPEED_INSTALL = (
    'pip install -c constraints-cpu.txt -e ".[deepspeed]" (CPU: the tests\' DeepSpeed) or '
    f"{GPU_EXTRA} (GPU machines: vllm + deepspeed)"
)


@dataclass
class DeepSpeedOptions:
    """``prime.deepspeed``: how the ``deepspeed`` backend runs (ignored by ``torch``)."""

    zero_stage: int = 2
    """ZeRO stage: 0 (plain data parallel), 1 (optimizer states sharded), 2 (+ gradients), 3
    (+ parameters)."""
    offload_optimizer: bool = False
    """Keep the AdamW states (and the step) on CPU: ZeRO-Offload, the lever that fits a 7B update
    on one 80 GB GPU. Uses DeepSpeed's CPU Adam."""
    offload_param: bool = False
    """Keep the parameters on CPU between uses (ZeRO-3 only)."""
    bf16: bool = False
    """bf16 weights and gradients with fp32 master weights (GPU); fp32 otherwise."""
    num_procs: int = 1
    """Ranks of each update: 1 runs DeepSpeed inside the Kedro process; N > 1 runs the update stage
    on N ranks per node (``engines/train/ranks.py``: torchrun, or DeepSpeed's launcher with a hostfile)."""
    hostfile: str | None = None
    """Several nodes: a DeepSpeed hostfile (``host slots=N`` per line); the ranks start with
    DeepSpeed's launcher and ``work_dir`` must be on a filesystem every node sees."""
    master_port: int | None = None
    """The rendezvous port (None: a free one on this host)."""
    work_dir: str | None = None
    """Where a multi-rank update exchanges its inputs and outputs (None: the system temp folder)."""
    extra_config: dict = field(default_factory=dict)
    """Merged last into the DeepSpeed config (e.g. ``{"zero_optimization": {"overlap_comm": true}}``)."""
    keep_engine: bool = True
    """Keep the engine from one update of a model to the next (module docstring): the optimizer
    partitions stay on their ranks and are gathered only when a checkpoint is written."""

    @property
    def shares_module(self) -> bool:
        """Whether a kept engine's own module can be the model the other stages use: fp32 weights
        that every rank holds whole (ZeRO 0-2). Otherwise they get a plain fp32 copy."""
        return self.zero_stage < 3 and not self.bf16

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"prime.deepspeed.zero_stage = {self.zero_stage!r} is invalid: one of 0, 1, 2, 3")
        if self.offload_param and self.zero_stage != 3:
            raise ValueError("prime.deepspeed.offload_param needs zero_stage 3 (only ZeRO-3 partitions parameters)")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("prime.deepspeed.offload_optimizer needs zero_stage >= 1")
        if int(self.num_procs) < 1:
            raise ValueError(f"prime.deepspeed.num_procs = {self.num_procs!r} is invalid: must be >= 1")

    @classmethod
    def coerce(cls, value) -> DeepSpeedOptions:
        if isinstance(value, cls):
            return value
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"prime.deepspeed must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"prime.deepspeed has unknown keys {unknown}; valid keys are {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**value)


def require_deepspeed():
    """Import deepspeed, or raise an ImportError that names the install command."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    try:
        import deepspeed  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            f"prime.trainer_backend=deepspeed needs the deepspeed package ({err}); install it with {DEEPSPEED_INSTALL}"
        ) from err
    return deepspeed


def deepspeed_state_globals() -> list:
    """The DeepSpeed classes inside a ZeRO optimizer state dict (a loss-scaler record, the stage
    enum, parameter-fragment addresses): allowed when ``optimizer.pt`` is loaded weights-only."""
    require_deepspeed()
    from deepspeed.runtime.fp16.loss_scaler import LossScaler  # noqa: PLC0415
    from deepspeed.runtime.zero.config import ZeroStageEnum  # noqa: PLC0415
    from deepspeed.utils.tensor_fragment import fragment_address  # noqa: PLC0415

    return [LossScaler, ZeroStageEnum, fragment_address]


#: Engines started in this process (a test counts them: a kept engine is started once per campaign).
ENGINE_STARTS = {"count": 0}


class KeptEngine:
    """The optimizer state of an update whose engine lives on (module docstring): the next update of
    ``module`` (the model that update handed back) continues ``engine``; :meth:`state_dict` gathers the partitions for a checkpoint.

    It is valid until that next update takes the engine over (the engine then steps on, and an
    older snapshot would be wrong): after that it raises instead of answering."""

    def __init__(self, engine, opt, options: DeepSpeedOptions, world_size: int, module) -> None:
        self.engine, self.opt, self.options, self.world_size = engine, opt, options, world_size
        self.module = module  # the model the update handed back (the engine's module, or its plain copy)
        self._gathered: dict | None = None
        self._live = True

    def __bool__(self) -> bool:  # an optimizer state is present
        return True

    def serves(self, model, options: DeepSpeedOptions, world_size: int) -> bool:
        """Whether an update of ``model`` with ``options`` on ``world_size`` ranks can continue it."""
        return self._live and model is self.module and options == self.options and world_size == self.world_size

    def take(self) -> tuple:
        """Hand the engine and optimizer to the next update; this state is stale from now on."""
        self._check_live()
        self._live = False
        return self.engine, self.opt

    def state_dict(self) -> dict:
        """The checkpoint's optimizer state ``{"deepspeed": {...}}``, every rank's partition on rank 0
        (others get Nones). A collective on the first call: every rank calls it together (the
        catalog's ``prepare_save``); later calls return the same snapshot."""
        if self._gathered is None:
            self._check_live()
            self._gathered = _gathered_state(self.opt, self.options, self.world_size)
        return self._gathered

    def close(self) -> None:
        """Destroy the engine (its state was not continued)."""
        if self._live:
            self._live = False
            self.engine.destroy()

    def _check_live(self) -> None:
        if not self._live:
            raise RuntimeError(
                "this DeepSpeed optimizer state belongs to an engine that a later update has taken over; "
                "it no longer describes the weights it came with"
            )


def _gathered_state(opt, options: DeepSpeedOptions, world_size: int) -> dict:
    """The checkpoint's optimizer state ``{"deepspeed": {...}}``: every rank's partition of ``opt``
    on rank 0 (a collective with several ranks; the others get Nones)."""
    states = _gather_to_first(_cpu(opt.state_dict()), world_size)
    return {"deepspeed": {"world_size": world_size, "zero_stage": options.zero_stage, "ranks": states}}


def _set_hyperparameters(opt, lr: float, weight_decay: float) -> None:
    """The config's learning rate and weight decay on every parameter group (not a stored state's)."""
    for group in getattr(opt, "optimizer", opt).param_groups:
        group["lr"], group["weight_decay"] = lr, weight_decay


def _gather_to_first(obj, world_size: int) -> list:
    """Every rank's ``obj`` on rank 0 (the others get Nones: only rank 0 saves)."""
    if world_size == 1:
        return [obj]
    rank = torch.distributed.get_rank()
    out = [None] * world_size if rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out if rank == 0 else [None] * world_size


class DeepSpeedTrainer(Trainer):
    """A DeepSpeed engine around the model (module docstring)."""

    @classmethod
    def from_config(cls, model, optimizer_state, *, lr, weight_decay, grad_clip, micro_batch, deepspeed=None):
        return cls(model, optimizer_state, lr, weight_decay, grad_clip, micro_batch, DeepSpeedOptions.coerce(deepspeed))

    def __init__(
        self,
        model,
        optimizer_state: dict | None,
        lr: float,
        weight_decay: float,
        grad_clip: float,
        micro_batch: int,
        options: DeepSpeedOptions,
    ):
        ds = require_deepspeed()
        self.ds = ds
        self.options = options
        self._weights: dict[str, torch.Tensor] | None = None  # the gathered weights since the last step
        self.grad_clip = grad_clip
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            _init_single_process(ds)
        self.rank, self.world_size = world()
        if isinstance(optimizer_state, KeptEngine):
            if optimizer_state.serves(model, options, self.world_size):
                self.engine, self.opt = optimizer_state.take()
                self._plain = None if model is self.engine.module else model
                super().__init__(self.engine.module)
                _set_hyperparameters(self.opt, lr, weight_decay)
                log.info("deepspeed: continuing the engine of the previous update")
                return
            # Another model object (read from disk) or other options: start afresh from its state.
            kept = optimizer_state
            optimizer_state = kept.state_dict() if kept.world_size == self.world_size else None
            kept.close()
        self._plain = None
        if options.bf16:
            model = model.to(torch.bfloat16)
        config = deepspeed_config(
            options,
            micro_batch=micro_batch,
            world_size=self.world_size,
            grad_clip=grad_clip,
            lr=lr,
            weight_decay=weight_decay,
        )
        client_opt = None
        if not options.offload_optimizer:
            # torch's AdamW, the same update rule as the torch backend (DeepSpeed's own Adam kernels
            # need a compiled op per accelerator; its CPU Adam is used when the states are offloaded).
            client_opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.engine, self.opt, _, _ = ds.initialize(
            model=model,
            optimizer=client_opt,
            config=config,
            model_parameters=None if client_opt else model.parameters(),
        )
        ENGINE_STARTS["count"] += 1
        log.info(
            "deepspeed: engine started (ZeRO stage %d, %d rank(s)%s)",
            options.zero_stage,
            self.world_size,
            ", kept for the next update" if options.keep_engine else "",
        )
        super().__init__(self.engine.module)
        self._load_state(optimizer_state, lr, weight_decay)

    def _load_state(self, state: dict | None, lr: float, weight_decay: float) -> None:
        if not state:
            return
        if "deepspeed" not in state:
            log.warning(
                "the checkpoint's optimizer state comes from the torch backend; the deepspeed backend "
                "starts fresh AdamW moments"
            )
            return
        saved = state["deepspeed"]
        if saved["world_size"] != self.world_size or saved["zero_stage"] != self.options.zero_stage:
            raise ValueError(
                f"the checkpoint's optimizer state was saved by {saved['world_size']} rank(s) at ZeRO "
                f"stage {saved['zero_stage']}; this update runs {self.world_size} rank(s) at stage "
                f"{self.options.zero_stage}. Keep prime.deepspeed as it was, or start from a "
                "checkpoint without optimizer.pt"
            )
        ranks = saved["ranks"]
        if self.options.zero_stage == 0:
            self.opt.load_state_dict(ranks[0])
        else:
            self.opt.load_state_dict(ranks, load_optimizer_states=True)
        _set_hyperparameters(self.opt, lr, weight_decay)

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def backward(self, loss, last):
        self.engine.set_gradient_accumulation_boundary(bool(last))
        self.engine.backward(loss, scale_wrt_gas=False)
        if not last:
            # What DeepSpeed does between micro-batches when forwards go through ``engine(...)``
            # (ours call the module's body and head directly): count the micro step, so that ZeRO-3
            # accumulates the next micro-batch's partitioned gradients instead of overwriting them.
            self.engine.step()
            clear = getattr(self.engine.optimizer, "clear_backward_seen_flag", None)
            if clear is not None:
                clear()

    def step(self, loss, check):
        self._weights = None  # gathered before this step: stale after it
        # A non-finite loss on any rank skips the step on every rank (they must stay in lockstep).
        if self.all_sum([0.0 if math.isfinite(loss) else 1.0])[0] > 0:
            loss = loss if not math.isfinite(loss) else float("nan")
            if check(loss, float("nan")):
                self.engine.zero_grad()
                self.engine.optimizer.zero_grad(set_to_none=True)
                return float("nan"), True
        if self.options.zero_stage == 0:
            # Plain gradients on the parameters: clip here (the config's clipping is off), so the
            # norm is known before the step and a non-finite one is skipped like the torch backend.
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
            if check(loss, grad_norm):
                self.engine.zero_grad()
                return grad_norm, True
            self.engine.step()
            return grad_norm, False
        self.engine.step()
        grad_norm = self.engine.get_global_grad_norm()
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        # DeepSpeed computes the norm inside its step, so a non-finite gradient is seen after the
        # step: ``check`` raises (prime.nonfinite=stop) or warns, and assert_finite then refuses the
        # poisoned weights either way.
        if not math.isfinite(grad_norm):
            check(loss, grad_norm)
        return grad_norm, False

    def _full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer at full size, as fresh tensors on CPU (gathered under ZeRO-3),
        gathered once per update: ``assert_finite`` and ``finish`` share the copy."""
        if self._weights is None:
            self._weights = self._gather_full_state()
        return self._weights

    def _gather_full_state(self) -> dict[str, torch.Tensor]:
        module = self.engine.module
        if self.options.zero_stage == 3:
            params = list(module.parameters())
            with self.ds.zero.GatheredParameters(params, modifier_rank=None):
                return {
                    k: v.detach().to("cpu", copy=True).float() if v.is_floating_point() else v.detach().cpu().clone()
                    for k, v in module.state_dict().items()
                }
        return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}

    def assert_finite(self, fail):
        if self.options.keep_engine and self.options.shares_module:
            # finish hands on the engine's own module: check it where it is, without a copy
            weights = self.engine.module.state_dict().items()
        else:  # the copy finish hands on
            weights = self._full_state_dict().items()
        _check_tensors(weights, fail, "parameter")
        opt = getattr(self.opt, "optimizer", self.opt)
        for i, state in enumerate(opt.state.values()):
            _check_tensors(((f"{k} of partition {i}", v) for k, v in state.items()), fail, "optimizer state")

    def finish(self):
        module = self.engine.module
        if self.options.keep_engine:
            module.zero_grad(set_to_none=True)
            if self.options.shares_module:
                model = module  # trained in place: it is the updated model
            else:
                if self._plain is None:
                    self._plain = _plain_copy(module)
                _load_weights(self._plain, self._full_state_dict(), in_place=True)
                self._weights = None
                model = self._plain
            return model, KeptEngine(self.engine, self.opt, self.options, self.world_size, model)
        weights, self._weights = self._full_state_dict(), None
        state = _gathered_state(self.opt, self.options, self.world_size)
        self.engine.destroy()
        # ZeRO-3 left the module's parameters partitioned, with hooks: a fresh model gets the weights.
        model = _plain_copy(module) if self.options.zero_stage == 3 else module
        _load_weights(model, weights, in_place=False)
        return model, state


def _plain_copy(module):
    """A new fp32 model of ``module``'s class and config (its weights are loaded next)."""
    model = type(module)(copy.deepcopy(module.config)).to(torch.float32)
    model.generation_config = module.generation_config
    return model


def _load_weights(model, weights: dict[str, torch.Tensor], *, in_place: bool) -> None:
    """``weights`` into ``model``'s parameters and buffers, in fp32 whatever the training precision
    was: copied into their storage (``in_place``), or as their new storage (plain parameters
    where ZeRO 1/2 made them views of flat buffers)."""
    own = dict(model.named_parameters(remove_duplicate=False))
    own.update({k: v for k, v in model.named_buffers(remove_duplicate=False) if k in weights})
    missing = sorted(set(own) - set(weights))
    if missing:
        raise RuntimeError(f"deepspeed backend: the updated weights lack {missing[:5]}")
    with torch.no_grad():
        for name, tensor in own.items():
            value = weights[name]
            value = value.float() if value.is_floating_point() else value
            if in_place:
                tensor.copy_(value)
            else:
                tensor.data = value
    model.tie_weights()


def _cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu(v) for v in obj)
    return obj


def _free_port() -> str:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


#: Rendezvous attempts of the one-rank group: a free port can be taken by another process between
#: finding it and listening on it (two runs on one machine), which fails with EADDRINUSE.
PORT_ATTEMPTS = 3


def _init_single_process(ds) -> None:
    """A one-rank process group on loopback, so DeepSpeed can run inside the Kedro process.

    The port it chose is removed from the environment again once the group exists: a child process
    (a ``kedro run`` started from here, a test's subprocess) must not inherit this process's
    listening port as its own. (RANK, LOCAL_RANK, WORLD_SIZE stay: DeepSpeed reads them later.)"""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    chosen = "MASTER_PORT" not in os.environ
    if chosen:
        os.environ["MASTER_PORT"] = _free_port()
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                ds.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
                return
            except RuntimeError as err:  # torch's DistNetworkError is a RuntimeError
                if not chosen or "EADDRINUSE" not in str(err) or attempt == PORT_ATTEMPTS:
                    raise
                log.warning(
                    "port %s was taken before the rendezvous listened; trying another", os.environ["MASTER_PORT"]
                )
                os.environ["MASTER_PORT"] = _free_port()
    finally:
        if chosen:
            os.environ.pop("MASTER_PORT", None)


def deepspeed_config(
    options: DeepSpeedOptions, *, micro_batch: int, world_size: int, grad_clip: float, lr: float, weight_decay: float
) -> dict:
    """The DeepSpeed JSON config for one update stage. Batch sizes are nominal: the stage decides
    where each mini-batch ends (``set_gradient_accumulation_boundary``) and how losses are weighted."""
    zero: dict = {"stage": options.zero_stage}
    if options.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if options.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    config: dict = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro_batch * world_size,
        "gradient_clipping": grad_clip if options.zero_stage else 0.0,  # stage 0: DeepSpeedTrainer.step clips
        "zero_optimization": zero,
        "bf16": {"enabled": options.bf16},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if options.offload_optimizer:
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": lr, "weight_decay": weight_decay, "betas": [0.9, 0.999], "eps": 1e-8},
        }
    _merge(config, options.extra_config)
    return config


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
