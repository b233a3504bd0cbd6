"""Code extraction and test execution (PRIME_REFERENCE.md, "Verifiers").

The response's last fenced Python block (else the whole response) runs against the ground
truth's tests in a child interpreter: call-based when the ground truth names ``fn_name``,
stdin/stdout otherwise. The score is 1.0 when every test passes, else the fraction passed among the
first <= 10 tests.

Isolation here is the portable fall-back (``isolation="rlimits"``): a fresh session (its own
process group, killed whole on timeout), resource limits on CPU seconds, address space, file size
and open files, an emptied environment, ``python -I`` (no user site, no env vars), and a fresh
temporary working directory removed afterwards. It does not stop network access or reads of the
file system; the hardened sandbox is the subject of its own work item.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile

from eurus_prime.verifiers.verdict import Verdict

PER_TEST_TIMEOUT_S = 5.0
MAX_TESTS = 10
MEMORY_LIMIT_BYTES = 1 << 30
MAX_OUTPUT_BYTES = 1 << 20

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)

# Runs inside the child. Reads {"source", "fn_name", "inputs", "outputs", "timeout"} from stdin and
# prints one JSON list of booleans, one per test.
_HARNESS = r"""
import contextlib, io, json, signal, sys
spec = json.loads(sys.stdin.read())
def _alarm(signum, frame):
    raise TimeoutError("test timed out")
signal.signal(signal.SIGALRM, _alarm)
def _norm(x):
    return json.loads(json.dumps(x))
results = []
for args, expected in zip(spec["inputs"], spec["outputs"]):
    ok = False
    signal.setitimer(signal.ITIMER_REAL, spec["timeout"])
    try:
        if spec["fn_name"]:
            ns = {"__name__": "__solution__"}
            with contextlib.redirect_stdout(io.StringIO()):
                exec(spec["source"], ns)
                got = ns[spec["fn_name"]](*args)
            ok = _norm(got) == _norm(expected)
        else:
            out = io.StringIO()
            sys.stdin = io.StringIO(args if isinstance(args, str) else "\n".join(map(str, args)))
            with contextlib.redirect_stdout(out):
                exec(spec["source"], {"__name__": "__main__"})
            ok = out.getvalue().strip() == str(expected).strip()
    except BaseException:
        ok = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    results.append(ok)
sys.__stdout__.write(json.dumps(results))
"""


def extract_code(response: str) -> str:
    """The last fenced Python block of ``response``, or the whole response if it has none."""
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


def _limit_child(cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT_BYTES, MAX_OUTPUT_BYTES))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def parse_ground_truth(ground_truth: str) -> dict:
    """Parse and check the Eurus-2 code ground truth JSON; ValueError names what is wrong."""
    try:
        spec = json.loads(ground_truth)
    except json.JSONDecodeError as exc:
        raise ValueError(f"code ground_truth is not JSON: {exc}") from None
    if not isinstance(spec, dict) or "inputs" not in spec or "outputs" not in spec:
        raise ValueError("code ground_truth must be a JSON object with 'inputs' and 'outputs'")
    if len(spec["inputs"]) != len(spec["outputs"]):
        raise ValueError(
            f"code ground_truth has {len(spec['inputs'])} inputs but "
            f"{len(spec['outputs'])} outputs"
        )
    return spec


def grade_code(response: str, ground_truth: str) -> Verdict:
    """Run the response's code against the hidden tests; never raises for bad model output."""
    spec = parse_ground_truth(ground_truth)
    source = extract_code(response)
    inputs, outputs = spec["inputs"][:MAX_TESTS], spec["outputs"][:MAX_TESTS]
    if not inputs:
        return Verdict(0.0, False, "error", error="ground truth has no tests", isolation="rlimits")
    payload = json.dumps(
        {
            "source": source,
            "fn_name": spec.get("fn_name"),
            "inputs": inputs,
            "outputs": outputs,
            "timeout": PER_TEST_TIMEOUT_S,
        }
    )
    wall_timeout = PER_TEST_TIMEOUT_S * len(inputs) + 2.0
    with tempfile.TemporaryDirectory(prefix="eurus_prime_code_") as workdir:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _HARNESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin"},
            start_new_session=True,
            preexec_fn=lambda: _limit_child(int(wall_timeout) + 1),
        )
        try:
            stdout, stderr = proc.communicate(payload.encode(), timeout=wall_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Verdict(0.0, False, "timeout", extracted=source[:200], isolation="rlimits")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    try:
        passed = json.loads(stdout.decode() or "null")
        if not isinstance(passed, list):
            raise ValueError("harness printed no result")
    except ValueError:
        error = stderr.decode(errors="replace")[-500:] or f"exit code {proc.returncode}"
        return Verdict(0.0, False, "error", extracted=source[:200], error=error, isolation="rlimits")
    score = 1.0 if all(passed) else sum(passed) / len(passed)
    return Verdict(
        score, all(passed), "correct" if all(passed) else "wrong",
        extracted=source[:200], isolation="rlimits",
    )
