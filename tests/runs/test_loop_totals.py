"""An iteration of several sessions (draws, then the rest) reports its hook metrics once."""

from eurus_prime.runs.loop import add_totals


def test_times_add_up_peaks_take_the_highest_and_rss_before_the_last_run():
    acc: dict[str, float] = {}
    add_totals(acc, {"time/io_load": 1.0, "memory/generate_rollouts_peak_rss_mb": 300.0, "memory/peak_rss_mb": 310.0})
    add_totals(
        acc,
        {
            "time/io_load": 0.5,
            "memory/generate_rollouts_peak_rss_mb": 250.0,
            "memory/generate_rollouts_rss_before_mb": 200.0,
            "memory/update_policy_peak_rss_mb": 400.0,
            "memory/peak_rss_mb": 405.0,
        },
    )
    add_totals(acc, {"memory/generate_rollouts_rss_before_mb": 210.0})
    assert acc == {
        "time/io_load": 1.5,
        "memory/generate_rollouts_peak_rss_mb": 300.0,
        "memory/generate_rollouts_rss_before_mb": 210.0,
        "memory/update_policy_peak_rss_mb": 400.0,
        "memory/peak_rss_mb": 405.0,
    }


def test_an_spmd_campaign_refuses_what_would_pin_or_span_gpus_naming_the_parameter():
    from eurus_prime.prime.config import PrimeConfig
    from eurus_prime.runs.loop import spmd_problem

    assert spmd_problem(PrimeConfig()) is None
    assert spmd_problem(PrimeConfig(trainer_backend="deepspeed", deepspeed={"num_procs": 8})) is None
    assert spmd_problem(PrimeConfig(rollout_engine="vllm")).startswith("prime.rollout_engine=vllm under torchrun")
    assert spmd_problem(PrimeConfig(score_device="cuda:0")).startswith("prime.score_device=cuda:0 under torchrun")
    assert spmd_problem(PrimeConfig(score_device="cuda")) is None  # each rank's own device
