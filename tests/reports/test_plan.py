"""``eurus-prime plan``: the memory and time arithmetic, and the command on conf/eurus7b."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from eurus_prime import cli
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.reports.plan import GIB, PlanConfig, make_plan

P = 7.62e9
SEVEN_B = PrimeConfig(
    prompts_per_step=256,
    oversample_factor=4.0,
    max_prompt_length=1024,
    max_response_length=3072,
    micro_batch=4,
    rollout_engine="vllm",
    gradient_checkpointing=True,
    trainer_backend="deepspeed",
    vllm={"gpu_memory_utilization": 0.45, "tensor_parallel_size": 8},
    deepspeed={"zero_stage": 2, "offload_optimizer": True, "bf16": True},
)


def _line(plan, phase, start):
    return next(x for x in plan.lines if x.phase == phase and x.item.startswith(start))


def test_memory_lines_are_the_sums_they_claim():
    plan = make_plan(SEVEN_B, {})
    assert _line(plan, "generation", "vLLM weights").gib == pytest.approx(2 * P / 8 / GIB)
    assert _line(plan, "update", "bf16 gradients").gib == pytest.approx(2 * P / GIB)
    assert _line(plan, "update", "fp32 master").where == "CPU RAM"
    for phase in ("scoring", "update"):
        parts = sum(x.gib for x in plan.lines if x.phase == phase and x.gib is not None)
        assert plan.peaks[phase] == pytest.approx(parts + PlanConfig().activation_overhead_gib)
    assert plan.peaks["update"] < 80 and not plan.warnings
    assert plan.steps_per_epoch == 445  # 455,000 prompts / 1,024 drawn per step
    assert plan.gpu_hours_per_step == pytest.approx(plan.step_hours * 8)


def test_zero_shards_over_the_ranks():
    for stage, sharded in (
        (1, {"fp32 master"}),
        (2, {"fp32 master", "bf16 gradients"}),
        (3, {"fp32 master", "bf16 gradients", "bf16 weights"}),
    ):
        one = make_plan(dataclasses.replace(SEVEN_B, deepspeed={"zero_stage": stage}), {})
        eight = make_plan(dataclasses.replace(SEVEN_B, deepspeed={"zero_stage": stage, "num_procs": 8}), {})
        for item in ("fp32 master", "bf16 gradients", "bf16 weights"):
            ratio = _line(one, "update", item).gib / _line(eight, "update", item).gib
            assert ratio == pytest.approx(8 if item in sharded else 1), (stage, item)
        upd = {x.name.split(" (")[0]: x.seconds for x in one.phases}
        assert {x.name.split(" (")[0]: x.seconds for x in eight.phases}["PRM update"] == pytest.approx(
            upd["PRM update"] / 8
        )
        # ... but today's relaunched ranks pay a round trip through disk per update, which costs more
        assert eight.step_hours > one.step_hours and eight.resident_step_hours < one.step_hours


def test_what_does_not_fit_is_named():
    no_offload = dataclasses.replace(SEVEN_B, deepspeed={"zero_stage": 2, "offload_optimizer": False})
    plan = make_plan(no_offload, {})
    assert _line(plan, "update", "fp32 master").gib == pytest.approx(12 * P / GIB)
    assert any(w.startswith("update: ") and "> 80 GiB" in w for w in plan.warnings)
    greedy = dataclasses.replace(SEVEN_B, vllm={"gpu_memory_utilization": 0.9, "tensor_parallel_size": 8})
    assert any(w.startswith("update: ") for w in make_plan(greedy, {}).warnings)
    tiny_share = dataclasses.replace(SEVEN_B, vllm={"gpu_memory_utilization": 0.01, "tensor_parallel_size": 1})
    assert any("does not hold its weights" in w for w in make_plan(tiny_share, {}).warnings)
    assert any(
        "trainer_backend is torch" in w
        for w in make_plan(dataclasses.replace(SEVEN_B, trainer_backend="torch"), {}).warnings
    )
    # checkpointing trades time for memory
    full = make_plan(dataclasses.replace(SEVEN_B, gradient_checkpointing=False), {})
    assert full.peaks["update"] > plan.peaks["update"] or full.warnings
    with pytest.raises(ValueError, match=r"plan has unknown keys \['gpus'\]"):
        make_plan(SEVEN_B, {"gpus": 8})


def test_plan_command_on_the_eurus7b_environment(monkeypatch):
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    result = CliRunner().invoke(cli.main, ["plan", "--env", "eurus7b"])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "vLLM KV cache",
        "fp32 master weights + AdamW moments",
        "GPU-hours per step",
        "on the SPMD target",
        "launcher round trips (2 updates through the work folder)",
        "Steps per epoch: 445",
        "Fits: every phase is under the GPU's memory.",
    ):
        assert text in out, out
    result = CliRunner().invoke(cli.main, ["plan", "--env", "eurus7b", "--params", "prime.deepspeed.num_procs=1"])
    assert result.exit_code == 0 and "WARNING: update:" in result.output, result.output
    result = CliRunner().invoke(cli.main, ["plan"])
    assert result.exit_code != 0 and "has no `plan:` block" in result.output


def test_a_token_cap_plans_the_worst_micro_batch_it_allows():
    """``micro_batch_tokens``: the activations are those of the most rows of the longest sequence
    the cap lets through, not of ``micro_batch`` rows."""
    rows16 = make_plan(dataclasses.replace(SEVEN_B, micro_batch=16), {})
    capped = make_plan(dataclasses.replace(SEVEN_B, micro_batch=16, micro_batch_tokens=4 * 4096), {})
    rows4 = make_plan(SEVEN_B, {})
    act = "activations ("
    assert _line(capped, "scoring", act).item == "activations (4 rows x 4096 tokens)"
    assert _line(capped, "scoring", act).gib == pytest.approx(_line(rows4, "scoring", act).gib)
    assert _line(rows16, "scoring", act).gib == pytest.approx(4 * _line(rows4, "scoring", act).gib)
    assert capped.peaks["update"] == pytest.approx(rows4.peaks["update"])
    assert capped.peaks["update"] < rows16.peaks["update"]
    # a cap under one sequence still plans one row
    assert _line(make_plan(dataclasses.replace(SEVEN_B, micro_batch_tokens=100), {}), "scoring", act).item.startswith(
        "activations (1 row x"
    )


def test_checkpoint_io_start_up_and_the_gpus_each_phase_keeps_busy():
    """Every iteration writes the policy and PRM with their AdamW state; several ranks add the
    launcher's round trip and start-up per update; the SPMD target's step spreads generation and
    scoring over every GPU and writes checkpoints every ``save_every`` iterations."""
    plan = make_plan(SEVEN_B, {"disk_gb_per_s": 1.0, "optimizer_bytes_per_param": 12})
    phases = {x.name.split(" (")[0]: x for x in plan.phases}
    assert phases["checkpoint writes"].seconds == pytest.approx(2 * (2 + 12) * P / 1e9)
    assert phases["checkpoint writes"].gpus == 0 and phases["scoring"].gpus == 1
    assert "launcher round trips" not in phases  # num_procs 1: the update runs in the driver
    assert plan.step_hours * 3600 == pytest.approx(sum(x.seconds for x in plan.phases))
    eight = make_plan(
        dataclasses.replace(SEVEN_B, deepspeed={"zero_stage": 3, "num_procs": 8}),
        {"disk_gb_per_s": 1.0, "process_start_s": 30},
        save_every=5,
    )
    today = {x.name.split(" (")[0]: x for x in eight.phases}
    w, s = 2 * P, 12 * P  # bf16 weights, AdamW state
    assert today["launcher round trips"].seconds == pytest.approx(2 * (2 * (w + s) + 8 * w + s + (w + s)) / 1e9)
    assert today["process start-up"].seconds == 2 * 30
    assert today["PRM update"].gpus == 8
    resident = {x.name.split(" (")[0]: x for x in eight.resident}
    assert "launcher round trips" not in resident and "process start-up" not in resident
    assert resident["scoring"].seconds == pytest.approx(today["scoring"].seconds / 8) and resident["scoring"].gpus == 8
    assert today["checkpoint writes"].seconds == pytest.approx(2 * (2 + 12) * P / 1e9 / 5)  # 1 in 5
    assert resident["checkpoint writes"].seconds == pytest.approx(today["checkpoint writes"].seconds)
    assert eight.resident_step_hours < eight.step_hours
    critic = make_plan(dataclasses.replace(SEVEN_B, advantage_estimator="gae"), {"disk_gb_per_s": 1.0})
    assert next(x for x in critic.phases if x.name.startswith("checkpoint writes")).seconds == pytest.approx(
        3 * (2 + 12) * P / 1e9
    )
