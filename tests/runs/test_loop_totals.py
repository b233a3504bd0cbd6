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
