"""Pathological answers must score 0 (timeout / too_long) in bounded time from the main thread,
a plain thread, a thread pool and a worker process; math-verify's own SIGALRM timeouts are off."""

import multiprocessing
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import eurus_prime.verifiers.math as vm

TOWER = ("\\boxed{9^{9^{9^{9}}}}", "1")
DEEP_PARENS = ("\\boxed{" + "(" * 450 + "1" + ")" * 450 + "}", "1")  # < MAX_ANSWER_CHARS: parsed
DEEP_BRACES = ("\\boxed{" + "{" * 450 + "1" + "}" * 450 + "}", "1")
DEEP_500 = ("\\boxed{" + "(" * 500 + "1" + ")" * 500 + "}", "1")
HUGE = ("\\boxed{" + "1" * 1_000_000 + "}", "1")
CASES = {"tower": TOWER, "deep_parens": DEEP_PARENS, "deep_braces": DEEP_BRACES, "deep_500": DEEP_500, "huge": HUGE}
LIMIT_S = 0.5  # a short check limit keeps the suite fast; one test uses the real default
WALL_S = 10.0


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(vm, "CHECK_TIMEOUT_S", LIMIT_S)


def _bad(v):
    return v.score == 0.0 and not v.correct and v.reason in ("timeout", "too_long")


def _run_in_thread(response, truth):
    out = []
    t = threading.Thread(target=lambda: out.append(vm.grade_math(response, truth)))
    t.start()
    t.join(30)
    assert not t.is_alive()
    return out[0]


@pytest.mark.parametrize("name", list(CASES))
def test_pathological_main_thread(name, short_limit):
    start = time.monotonic()
    v = vm.grade_math(*CASES[name])
    assert _bad(v), v
    assert time.monotonic() - start < WALL_S


@pytest.mark.parametrize("name", list(CASES))
def test_pathological_plain_thread(name, short_limit):
    start = time.monotonic()
    v = _run_in_thread(*CASES[name])
    assert _bad(v), v
    assert time.monotonic() - start < WALL_S


@pytest.mark.parametrize("name", list(CASES))
def test_pathological_thread_pool(name, short_limit):
    start = time.monotonic()
    response, truth = CASES[name]
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(vm.grade_math, [response, response, "\\boxed{\\frac{1}{2}x}"], [truth, truth, "x/2"]))
    assert all(_bad(v) for v in verdicts[:2]), verdicts
    assert verdicts[2].correct  # an ordinary symbolic check still works from a thread
    assert time.monotonic() - start < WALL_S


def test_default_limit_main_thread_and_thread():
    assert 1.0 <= vm.CHECK_TIMEOUT_S <= 3.0
    start = time.monotonic()
    assert vm.grade_math(*TOWER).reason == "timeout"
    assert _run_in_thread(*TOWER).reason == "timeout"
    assert time.monotonic() - start < 2 * WALL_S


def _grade_in_worker(args):
    response, truth, limit = args
    vm.CHECK_TIMEOUT_S = limit
    start = time.monotonic()
    v = vm.grade_math(response, truth)
    return v.reason, v.score, time.monotonic() - start


def test_pathological_in_worker_process():
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        results = list(
            pool.map(
                _grade_in_worker,
                [(*TOWER, LIMIT_S), (*DEEP_PARENS, LIMIT_S), ("\\boxed{0.5}", "\\frac12", LIMIT_S)],
                timeout=60,
            )
        )
    assert [r[0] for r in results[:2]] == ["timeout", "timeout"] and results[2][:2] == ("correct", 1.0)
    assert all(r[2] < WALL_S for r in results)


def test_alarm_restores_previous_handler_and_timer(short_limit):
    def outer(signum, frame):  # pragma: no cover - must not fire during the test
        raise AssertionError("outer alarm fired")

    old = signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        assert vm.grade_math(*TOWER).reason == "timeout"
        assert signal.getsignal(signal.SIGALRM) is outer
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90.0 < left <= 100.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_math_verify_own_timeouts_are_never_armed(monkeypatch):
    calls = []
    real_alarm = signal.alarm
    monkeypatch.setattr(signal, "alarm", lambda s: calls.append(s) or real_alarm(s))
    assert vm.grade_math("\\boxed{x^2+2x+1}", "(x+1)^2").correct
    assert calls == []


def test_pool_is_recreated_after_being_killed(short_limit):
    assert _run_in_thread("\\boxed{(1,2)}", "(2,1)").reason == "wrong"
    vm.shutdown_pool()
    v = _run_in_thread("\\boxed{[1,2)}", "[1,2]")
    assert (v.reason, v.rule) == ("wrong", "none")
