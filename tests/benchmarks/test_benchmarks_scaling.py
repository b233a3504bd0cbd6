"""benchmarks/scaling.py and benchmarks/stage_timing.py without running a benchmark: the grid, the
parameters each point or size runs with, and the fitting, plotting and report code on synthetic
numbers."""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest

from tests.benchmarks import load_benchmark
from tests.images import assert_drawn, colour_share, png_pixels

scaling = load_benchmark("scaling")
stage_timing = load_benchmark("stage_timing")


def synthetic_points(quadratic: float = 0.0, noise: float = 0.01, seed: int = 0) -> list[dict]:
    """The default grid with made-up measurements: every node costs a + b * its tokens (plus,
    for update_policy, ``quadratic`` x the sum of squared sequence lengths), with relative noise."""
    rng = np.random.default_rng(seed)
    points = []
    for p in scaling.grid():
        P, N, L = p["prompts_per_step"], p["samples_per_prompt"], p["max_response_length"]
        resp = min(50.0, 0.9 * L)
        prompt = 30.0
        gen_rollouts = 2 * P * N
        trained_rollouts = 0.45 * gen_rollouts
        m = {
            "label": scaling.label(p),
            **p,
            "generated_rollouts": gen_rollouts,
            "generated_tokens": gen_rollouts * resp,
            "generated_prompt_tokens": gen_rollouts * prompt,
            "generated_tokens_padded": gen_rollouts * min(L, 3 * resp),
            "generated_sq_tokens": gen_rollouts * ((prompt + resp) ** 2 - prompt**2),
            "response_length_mean": resp,
            "response_length_max": min(L, 3 * resp),
            "truncated_share": 0.5 if L < 64 else 0.01,
            "distinct_responses": gen_rollouts,
            "groups_drawn": 2 * P,
            "groups_selected": trained_rollouts / N,
            "trained_rollouts": trained_rollouts,
            "trained_response_tokens": trained_rollouts * resp,
            "trained_tokens": trained_rollouts * (prompt + resp),
            "trained_sq_tokens": trained_rollouts * (prompt + resp) ** 2,
            "io_seconds": 0.5,
            "kedro_other_seconds": 0.4,
            "resamples": 0,
            "peak_rss_mb": 900.0,
            "run_seconds": 30.0,
            "node_peak_rss_mb": {n: 800.0 for n in scaling.NODES},
        }
        scaling.add_derived(m)
        nodes = {}
        for name in scaling.NODES:
            x = m[scaling.NODE_X[name]]
            t = 0.2 + 0.05 * x / 1000
            if name == "update_policy":
                t += quadratic * m["trained_sq_tokens"]
            if name in ("filter_prompts", "estimate_advantages"):
                t = 0.001 + 1e-7 * x
            nodes[name] = t * (1 + noise * rng.standard_normal())
        m["node_seconds"] = nodes
        m["iteration_seconds"] = sum(nodes.values()) + m["io_seconds"] + m["kedro_other_seconds"]
        points.append(m)
    return points


def test_grid_varies_one_axis_at_a_time_around_the_default():
    points = scaling.grid()
    labels = [scaling.label(p) for p in points]
    assert len(labels) == len(set(labels)) == 13
    assert labels[0] == "64x4x128" and set(points[0]["axes"]) == set(scaling.AXES)
    for p in points[1:]:
        if p["axes"] == ["diagonal"]:
            continue
        (axis,) = p["axes"]
        assert [k for k in scaling.DEFAULT if p[k] != scaling.DEFAULT[k]] == [axis]
    assert [scaling.label(p) for p in scaling.grid(quick=True)] == ["16x4x128", "32x4x128", "64x4x128"]
    # a budget too short for any answer: the regenerate filter would select nothing, so fixed_batch
    short = [p for p in points if p["max_response_length"] < 64]
    assert [scaling.label(p) for p in short] == ["64x4x32", "128x4x32"]
    assert all("prime.filter_mode=fixed_batch" in scaling.point_params(p, "") for p in short)
    assert all("extra" not in p for p in points if p["max_response_length"] >= 64)
    assert scaling.parse_points("8x2x32, 16x4x64") == [
        {"prompts_per_step": 8, "samples_per_prompt": 2, "max_response_length": 32, "axes": ["custom"]},
        {"prompts_per_step": 16, "samples_per_prompt": 4, "max_response_length": 64, "axes": ["custom"]},
    ]


def test_point_params_turn_evaluation_off_and_let_the_point_win():
    params = scaling.point_params(scaling.grid()[1], "prime.rollout_engine=hf,prime.prompts_per_step=999")
    from eurus_prime.runs.loop import parse_params

    prime = parse_params(params)["prime"]
    assert prime["eval_every"] == 0 and prime["rollout_engine"] == "hf"
    assert prime["prompts_per_step"] == 16 and prime["samples_per_prompt"] == 4
    assert prime["max_response_length"] == 128
    assert scaling._param(params, "generation_batch_size", 256) == 256
    assert scaling._param(params + ",prime.generation_batch_size=64", "generation_batch_size", 256) == 64


def test_fit_linear_recovers_a_line():
    x = np.array([1.0, 2, 3, 4, 5])
    fit = scaling.fit_linear(x, 2 + 3 * x)
    assert fit["a"] == pytest.approx(2) and fit["b"] == pytest.approx(3) and fit["r2"] == pytest.approx(1)
    assert np.allclose(fit["residuals"], 0, atol=1e-9)
    assert math.isnan(scaling.fit_linear([1.0, 1.0], [2.0, 3.0])["r2"])  # no spread in x: no fit


def test_analyse_linear_synthetic_numbers():
    points = synthetic_points()
    a = scaling.analyse(points)
    assert a["default_point"] == "64x4x128"
    pol = a["nodes"]["update_policy"]
    assert pol["r2"] > 0.99
    assert pol["b_seconds_per_1k_tokens"] == pytest.approx(0.05, rel=0.05)
    assert pol["a_seconds"] == pytest.approx(0.2, abs=0.1)
    assert 0 < pol["intercept_share_at_default"] < 0.5
    assert pol["squared_length_fit"]["share_at_default"] == pytest.approx(0, abs=0.15)
    assert set(a["marginal_ms_per_token"]) == {*scaling.AXES, "diagonal"}
    text = "\n".join(a["conclusions"])
    assert "`update_policy`: linear in tokens" in text
    assert "`filter_prompts`: negligible" in text


def test_analyse_sees_an_attention_term():
    a = scaling.analyse(synthetic_points(quadratic=2e-7, noise=0.002))
    quad = a["nodes"]["update_policy"]["squared_length_fit"]
    assert quad["c"] == pytest.approx(2e-7, rel=0.2)
    assert quad["adj_r2"] > quad["linear_adj_r2"]
    assert quad["share_at_default"] == pytest.approx(0.21, abs=0.05)  # 0.29 s of 1.41 s
    assert "attention" in next(c for c in a["conclusions"] if c.startswith("`update_policy`"))


def test_write_plot_and_markdown(tmp_path):
    points = synthetic_points()
    result = {
        "command": "python benchmarks/scaling.py --test",
        "iterations": 2,
        "params": "",
        "total_seconds": 60.0,
        "points": points,
        "failed": [],
        "notes": scaling.NOTES,
    }
    result["analysis"] = scaling.analyse(points)
    out = tmp_path / "results/scaling"
    scaling.write(result, out)
    # A panel per axis and the diagonal, 2 x 2 at 6.4 x 4.8 inches, 110 dpi; every panel has the
    # nodes' lines (their colours C1, C2, ...: the legend is in the first panel only; not C7, a
    # grey that antialiased black text has too). Measured: 3e-4 to 1e-3 of a panel; 0 without lines.
    pixels = png_pixels(out.with_suffix(".png"))
    assert pixels.shape[:2] == (2 * 528, 2 * 704)
    assert_drawn(pixels)
    for quadrant in (pixels[:528, :704], pixels[:528, 704:], pixels[528:, :704], pixels[528:, 704:]):
        assert sum(colour_share(quadrant, f"C{i}") for i in (1, 2, 3, 4, 5, 6, 8, 9)) > 1e-4
    md = out.with_suffix(".md").read_text()
    assert "Command: `python benchmarks/scaling.py --test`" in md
    assert "| 64x4x128 |" in md and "## Fits" in md and "![scaling](scaling.png)" in md
    assert all(f"| {p['label']} |" in md for p in points)  # a row per point
    back = json.loads(out.with_suffix(".json").read_text())
    assert len(back["points"]) == 13 and back["analysis"]["nodes"]["iteration"]["r2"] > 0.99
    # --from-json refits and replots without running anything
    scaling.main(["--from-json", str(out.with_suffix(".json")), "--out", str(tmp_path / "again/scaling")])
    assert (tmp_path / "again/scaling.png").exists() and (tmp_path / "again/scaling.md").exists()


def test_quick_points_analyse_and_plot(tmp_path):
    """Three points on one axis (what --quick measures) still fit, report and plot."""
    points = [p for p in synthetic_points() if p["label"] in ("16x4x128", "32x4x128", "64x4x128")]
    for p in points:
        p["axes"] = ["prompts_per_step"]
    a = scaling.analyse(points)
    assert a["nodes"]["iteration"]["r2"] > 0.95
    assert "squared_length_fit" in a["nodes"]["update_policy"]  # NaN with < 4 points, reported as –
    result = {
        "command": "x",
        "iterations": 2,
        "params": "",
        "total_seconds": 1.0,
        "points": points,
        "failed": [],
        "analysis": a,
    }
    scaling.write(result, tmp_path / "scaling")
    assert "–" in (tmp_path / "scaling.md").read_text()


def test_table_counts_reads_the_iteration_tables(tmp_path):
    import pandas as pd

    it = tmp_path / "data/05_rollouts/iter_0001"
    rollouts = pd.DataFrame(
        {
            "prompt_id": ["a", "a", "b", "b"],
            "ability": "math",
            "ground_truth": "1",
            "response": ["x", "x", "y", "z"],
            "response_length": [3, 5, 2, 4],
            "prompt_ids": [np.arange(2), np.arange(2), np.arange(4), np.arange(4)],
            "finish_reason": ["stop", "length", "stop", "stop"],
        }
    )
    report = pd.DataFrame({"prompt_id": ["a", "b"], "selected": [True, False]})
    for name, frame in (("rollouts", rollouts), ("filter_report", report)):
        for version in ("2020-01-01T00.00.00.000Z", "2021-01-01T00.00.00.000Z"):
            folder = it / f"{name}.parquet" / version
            folder.mkdir(parents=True)
            frame.to_parquet(folder / f"{name}.parquet")
    c = scaling.table_counts(tmp_path, 1, generation_batch_size=2)
    assert c["generated_rollouts"] == 4 and c["generated_tokens"] == 14
    assert c["distinct_responses"] == 3 and c["truncated_share"] == 0.25
    # sorted by prompt length: batches (a, a) longest 5, (b, b) longest 4
    assert c["generated_tokens_padded"] == 2 * 5 + 2 * 4
    assert c["trained_rollouts"] == 2 and c["trained_tokens"] == (2 + 3) + (2 + 5)
    assert c["groups_drawn"] == 2 and c["groups_selected"] == 1


def test_stage_timing_scaled_params():
    base = {"prompts_per_step": 64, "ppo_mini_batch": 64, "prm_mini_batch": 256}
    assert stage_timing.scaled_params("", 1, base=base) == "prime.prompts_per_step=64"
    assert (
        stage_timing.scaled_params("prime.rollout_engine=hf", 4, base=base)
        == "prime.rollout_engine=hf,prime.prompts_per_step=256"
    )
    assert (
        stage_timing.scaled_params("prime.prompts_per_step=32,prime.seed=1", 4, base=base)
        == "prime.seed=1,prime.prompts_per_step=128"
    )
    assert (
        stage_timing.scaled_params("", 4, True, base=base)
        == "prime.prompts_per_step=256,prime.ppo_mini_batch=256,prime.prm_mini_batch=1024"
    )
    assert stage_timing.default_prime()["prompts_per_step"] == 64


def test_stage_timing_summary_and_markdown():
    rows = []
    elapsed = 0.0
    for i in range(3):
        r = {
            "iteration": i,
            "seconds": 10.0 * (1 + (i == 0)),
            "resamples": 0,
            "time/io_load": 0.3,
            "time/io_save": 0.2,
            "rollout/responses": 512.0,
            "rollout/response_length_mean": 50.0,
            "filter/drawn": 128.0,
            "filter/selected": 60.0,
            "memory/peak_rss_mb": 900.0 + i,
        }
        for n in stage_timing.NODES:
            r[f"time/{n}"] = 1.0
        for n in stage_timing.MEMORY_NODES:
            r[f"memory/{n}_peak_rss_mb"], r[f"memory/{n}_rss_before_mb"] = 850.0 + i, 800.0
        if i == 0:
            r["eval/all"] = 0.5
        elapsed += r["seconds"] + 0.5
        r["elapsed"] = elapsed
        rows.append(r)
    iters = stage_timing.per_iteration(rows)
    s = stage_timing.summarise(iters)
    assert s["mean_iteration_wall_seconds"] == pytest.approx(10.5)
    assert s["kedro_other_seconds"] == pytest.approx(10 - 8 - 0.5)
    assert s["node_peak_rss_mb"]["update_policy"] == 852.0 and s["peak_rss_mb"] == 902.0
    assert s["evaluated_iterations"] == [] and s["measured_iterations"] == [1, 2]
    assert s["kedro_parquet_overhead_share"] == pytest.approx(2.0 / 10.5, abs=1e-3)
    assert s["overhead_share"] == pytest.approx(2.5 / 10.5, abs=1e-3)
    result = {
        "command": "python benchmarks/stage_timing.py --iterations 3",
        "iterations": 3,
        "params": "",
        "by_scale": {
            "1x": {**s, "params": "prime.prompts_per_step=64"},
            "4x": {**s, "params": "prime.prompts_per_step=256"},
        },
    }
    md = stage_timing.render_markdown(result)
    assert md.splitlines()[2] == "Command: `python benchmarks/stage_timing.py --iterations 3`"
    assert (
        "| part | 1x s | 1x share | 1x peak RSS MB | 1x it. 0 peak RSS MB | 4x s | 4x share | 4x peak RSS MB "
        "| 4x it. 0 peak RSS MB | 4x / 1x time |"
    ) in md
    assert "| node `update_policy` | 1.00 | 9.5% | 852 (+52) | 850 (+50) |" in md
    assert "Kedro + Parquet/checkpoint I/O overhead" in md


@pytest.mark.parametrize(
    "retries, runs_seen, kept, runs",
    [
        (1, [(0.9, 30.0), (0.1, 10.0)], 10.0, 2),  # busy, rerun, quiet: keep the quiet one
        (0, [(0.9, 30.0)], 30.0, 1),  # no retries
        (1, [(0.1, 10.0)], 10.0, 1),  # quiet at once
        (2, [(0.9, 30.0), (0.8, 12.0), (0.9, 20.0)], 12.0, 3),  # busy throughout: keep the fastest
    ],
)
def test_busy_points_are_rerun_keeping_the_fastest(monkeypatch, tmp_path, retries, runs_seen, kept, runs):
    template = synthetic_points()
    calls = []

    def fake_run_point(point, params, iterations):
        calls.append(scaling.label(point))
        other, seconds = runs_seen[min(len(calls) - 1, len(runs_seen) - 1)]
        m = json.loads(json.dumps(next(p for p in template if p["label"] == scaling.label(point))))
        m["load"] = {"load_mean": 3.0, "load_max": 7.0, "cpus": 2, "other_cores": other}
        m["iteration_seconds"] = seconds
        return m

    monkeypatch.setattr(scaling, "run_point", fake_run_point)
    out = tmp_path / "scaling"
    scaling.main(["--points", "64x4x128,16x4x128", "--retries", str(retries), "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    first = result["points"][0]
    assert first["iteration_seconds"] == kept and first["attempts"] == runs
    assert calls[:runs] == ["64x4x128"] * runs
    assert ("**Warning:**" in out.with_suffix(".md").read_text()) == (kept != 10.0)


def test_load_monitor_counts_other_work_not_its_own_children(monkeypatch):
    """``other_cores`` from scripted /proc snapshots and a scripted clock, so the number is known:
    the CPU seconds that processes outside this one's tree used during the run, per wall second."""
    import types

    import _project
    from _project import LoadMonitor

    me = os.getpid()
    # (pid, start time) -> (parent pid, CPU seconds, name), as LoadMonitor._processes reads /proc
    snapshots = iter(
        [
            # __enter__: this process, and another that has run for a while (only its CPU time from now counts)
            {(me, 1): (1, 10.0, "python"), (50, 5): (1, 100.0, "other")},
            # a tick: our worker and its child (listed before its parent) start; a foreign process starts
            {
                (me, 1): (1, 14.0, "python"),
                (61, 8): (60, 2.0, "grandchild"),
                (60, 7): (me, 3.0, "worker"),
                (50, 5): (1, 101.5, "other"),
                (70, 9): (1, 0.5, "cron"),
            },
            # __exit__: the worker is gone, its child re-parented to init (still ours); pid 60 is reused
            # by a foreign process that started after the last tick
            {
                (me, 1): (1, 20.0, "python"),
                (61, 8): (1, 6.0, "grandchild"),
                (50, 5): (1, 102.0, "other"),
                (70, 9): (1, 1.0, "cron"),
                (60, 12): (1, 0.25, "reused"),
            },
        ]
    )
    clock = iter([1000.0, 1002.5])  # __enter__, __exit__: 2.5 s of wall time
    monkeypatch.setattr(LoadMonitor, "_processes", staticmethod(lambda: next(snapshots)))
    monkeypatch.setattr(_project, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    with LoadMonitor(every=3600) as mon:  # the thread never ticks on its own: one scripted tick
        mon._sample()
    # other: 2.0 s (pid 50) + 1.0 s (pid 70, from 0) + 0.25 s (the reused pid 60, new) = 3.25 s;
    # this process (10 s), the worker (3 s) and its child (6 s) are not other work.
    assert mon.other_cores == pytest.approx(3.25 / 2.5)
    assert mon.summary() == {"load_mean": 3.0, "load_max": 3.0, "cpus": os.cpu_count(), "other_cores": 1.3}


def test_load_monitor_reads_proc_and_claims_its_real_child():
    import subprocess

    from _project import LoadMonitor

    procs = LoadMonitor._processes()
    (mine,) = [v for (pid, _), v in procs.items() if pid == os.getpid()]
    assert mine[0] == os.getppid() and mine[1] > 0  # parent pid and CPU seconds parsed from /proc/<pid>/stat
    with LoadMonitor(every=0.05) as mon:
        child = subprocess.Popen([sys.executable, "-c", "x = 0\nfor i in range(3_000_000): x += i"])
        assert child.wait() == 0
    assert child.pid in {pid for pid, _ in mon._ours}  # seen as this run's own work
    s = mon.summary()
    assert s["other_cores"] is not None and 0 <= s["other_cores"] < s["cpus"]
    assert s["cpus"] >= 1 and s["load_max"] >= 0
