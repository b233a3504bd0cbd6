"""Hostile-input corpus for the code verifier's sandbox.

Every program runs in both isolation layers (bubblewrap when available, and the rlimits fall-back)
and must be contained: the test process survives, no process of the run remains, nothing outside
the sandbox changed (canary file, /tmp, project dir), no connection reached a listener on
127.0.0.1, and the test process's secret environment never shows up in the verdict.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time
import uuid

import pytest

from eurus_prime.verifiers import sandbox
from eurus_prime.verifiers.code import grade_code_with, outputs_match, returns_match

T = 1.0  # per-test timeout used here (the production default is 5 s)
MARKER = "EURUSHOSTILE" + uuid.uuid4().hex[:10]
SECRET = "s3cr3t-" + uuid.uuid4().hex
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = {"bwrap": sandbox.sandbox_info, "fallback": sandbox.fallback_info}
UNDER_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(params=list(MODES), scope="module")
def info(request):
    """Each case runs in bubblewrap and in the fall-back. Where bwrap is missing or its probe
    fails, the bwrap cases skip (they would only repeat the fall-back's), and fail under CI=true."""
    got = MODES[request.param]()
    if request.param == "bwrap" and got.kind != "bwrap":
        message = f"bubblewrap is not in force ({'; '.join(got.notes) or 'no reason recorded'})"
        if UNDER_CI:
            pytest.fail(f"CI=true: {message}; the sandbox tests must test the sandbox")
        pytest.skip(message)
    return got


def test_bwrap_is_in_force_under_ci():
    if not UNDER_CI:
        pytest.skip("CI is not 'true': a machine without bwrap uses the fall-back")
    info = sandbox.sandbox_info()
    assert info.kind == "bwrap" and info.isolation.startswith("bwrap"), info.notes


@pytest.fixture()
def world(tmp_path_factory, monkeypatch):
    """A listener on 127.0.0.1, a canary file in a fresh tmp dir, a secret env var."""
    monkeypatch.setenv("EURUS_PRIME_TEST_SECRET", SECRET)
    canary_dir = tmp_path_factory.mktemp("canary")
    canary = canary_dir / "canary.txt"
    canary.write_text("original")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.setblocking(False)
    w = {
        "port": lsock.getsockname()[1],
        "canary": str(canary),
        "canary_dir": str(canary_dir),
        "pid": os.getpid(),
        "marker": MARKER,
        "project": PROJECT,
    }
    before_tmp = set(os.listdir("/tmp"))
    t0 = time.time()
    yield w
    # --- containment checks -------------------------------------------------------------------
    with pytest.raises(BlockingIOError):
        conn, _ = lsock.accept()
        conn.close()
    lsock.close()
    assert canary.read_text() == "original"
    assert sorted(os.listdir(canary_dir)) == ["canary.txt"]
    new_tmp = set(os.listdir("/tmp")) - before_tmp
    assert not [n for n in new_tmp if MARKER in n or _sandbox_owned(os.path.join("/tmp", n))]
    assert not [n for n in os.listdir(PROJECT) if MARKER in n]
    assert _leftovers(t0) == []


def _sandbox_owned(path: str) -> bool:
    try:
        uid = os.lstat(path).st_uid
    except OSError:
        return False
    return sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SLOTS + 1


def _procs():
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            uid = os.stat(f"/proc/{d}").st_uid
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        yield int(d), int(rest[1]), uid, rest[0], int(rest[19]), cmd


def _verifier_pool(cmd: str, uid: int) -> bool:
    """The verifiers' own process pools (the math timeout pool, the batch pool) and the code
    sandbox's fork servers are our children by design and live across tests: a forkserver, worker
    or sandbox server of ours, not a sandboxed program (those run as a sandbox uid)."""
    return uid == os.getuid() and ("multiprocessing" in cmd or sandbox.SERVER_MARK in cmd)


def _leftovers(t0: float) -> list:
    """Processes of this run still alive: our descendants, anything with the marker in its
    command line, and sandbox-uid processes started after the run began."""
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    for _ in range(20):  # zombies being reaped / kernel tearing down a namespace: allow 1 s
        procs = list(_procs())
        children: dict[int, list[int]] = {}
        for pid, ppid, *_ in procs:
            children.setdefault(ppid, []).append(pid)
        desc, stack = set(), [os.getpid()]
        while stack:
            for c in children.get(stack.pop(), []):
                if c not in desc:
                    desc.add(c)
                    stack.append(c)
        bad = [
            (pid, uid, state, cmd[:80])
            for pid, ppid, uid, state, start, cmd in procs
            if state != "Z"
            and (
                (pid in desc and not _verifier_pool(cmd, uid))
                or MARKER in cmd
                or (sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SLOTS and btime + start / hz >= t0 - 1)
            )
        ]
        if not bad:
            return []
        time.sleep(0.05)
    return bad


def run(info, source: str, gt: dict, timeout: float = T):
    v = grade_code_with(f"```python\n{textwrap.dedent(source)}\n```", json.dumps(gt), timeout=timeout, info=info)
    assert SECRET not in (v.detail or "") and SECRET not in (v.error or "")
    assert v.isolation == info.isolation and v.verifier == info.verifier and v.rule == "tests"
    return v


STDIO = {"inputs": ["3\n"], "outputs": ["6\n"]}
CALL = {"fn_name": "f", "inputs": [[1]], "outputs": [2]}

# name -> (source template: {port} {canary} {pid} {marker} {project} {canary_dir}, ground truth)
HOSTILE = {
    "fork_bomb": (
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        STDIO,
    ),
    "fork_bomb_exec_marker": (
        """
        import os, sys
        for _ in range(200):
            try:
                if os.fork() == 0:
                    os.execv("/bin/sleep", ["sleep", "30", "{marker}"])
            except OSError:
                pass
        print(6)
        """,
        STDIO,
    ),
    "infinite_loop": ("while True: pass", STDIO),
    "memory_bomb": (
        """
        x = []
        while True:
            x.append(bytearray(50 * 1024 * 1024))
        """,
        STDIO,
    ),
    "memory_bomb_single": ("x = bytearray(1 << 40)", STDIO),
    "deep_recursion": (
        """
        import sys
        sys.setrecursionlimit(10 ** 8)
        def f(n):
            return f(n + 1) + 1
        f(0)
        """,
        STDIO,
    ),
    "huge_stdout": (
        """
        import sys
        while True:
            sys.stdout.write("x" * 65536)
        """,
        STDIO,
    ),
    "write_delete_outside": (
        """
        import os, shutil
        for act in (lambda: os.remove("{canary}"), lambda: open("{canary}", "w").write("pwned"),
                    lambda: shutil.rmtree("{canary_dir}"), lambda: open("{canary_dir}/{marker}", "w"),
                    lambda: open("/tmp/{marker}", "w").write("x"),
                    lambda: open("{project}/{marker}", "w").write("x"),
                    lambda: os.chmod("{canary}", 0o777), lambda: os.rename("{canary}", "/tmp/{marker}")):
            try:
                act()
            except Exception as e:
                print(type(e).__name__)
        """,
        STDIO,
    ),
    "read_parent_env": (
        """
        import os
        print(dict(os.environ))
        for p in ("/proc/{pid}/environ", "/proc/1/environ", "/proc/%d/environ" % os.getppid(),
                  "/proc/self/environ"):
            try:
                print(open(p, "rb").read())
            except Exception as e:
                print(p, type(e).__name__)
        import sys
        sys.stderr.write(str(dict(os.environ)))
        raise SystemExit(str(dict(os.environ)))
        """,
        STDIO,
    ),
    "socket_connect": (
        """
        import socket
        for host in ("127.0.0.1", "localhost", "::1"):
            try:
                s = socket.create_connection((host, {port}), timeout=0.5)
                s.sendall(b"hello")
                print("CONNECTED")
            except Exception as e:
                print(type(e).__name__, e)
        """,
        STDIO,
    ),
    "socket_raw_ctypes": (
        """
        import ctypes, struct
        libc = ctypes.CDLL(None)
        fd = libc.socket(2, 1, 0)
        addr = struct.pack("!HH4s8x", 2, {port}, bytes([127, 0, 0, 1]))
        addr = struct.pack("<H", 2) + addr[2:]
        print(fd, libc.connect(fd, addr, len(addr)))
        """,
        STDIO,
    ),
    "kill_parent": (
        """
        import os, signal
        os.kill(os.getppid(), signal.SIGKILL)
        """,
        STDIO,
    ),
    "kill_test_pid": (
        """
        import os, signal
        for sig in (signal.SIGKILL, signal.SIGTERM):
            for target in ({pid}, -{pid}, 1):
                try:
                    os.kill(target, sig)
                except Exception as e:
                    print(type(e).__name__)
        """,
        STDIO,
    ),
    "kill_everything": (
        """
        import os, signal
        os.kill(-1, signal.SIGKILL)
        """,
        STDIO,
    ),
    "ctypes_segfault": (
        """
        import ctypes
        ctypes.string_at(0)
        """,
        STDIO,
    ),
    "sys_exit_before_print": (
        """
        import sys
        sys.exit(0)
        print(6)
        """,
        STDIO,
    ),
    "os_exit_unflushed": (
        """
        import os
        print(6)
        os._exit(0)
        """,
        STDIO,
    ),
    "input_without_stdin": (
        """
        def f(x):
            return int(input()) * 2
        """,
        CALL,
    ),
    "read_past_eof": (
        """
        a = input(); b = input()
        print(6)
        """,
        STDIO,
    ),
    "sleep_past_timeout": (
        """
        import time
        time.sleep(60)
        print(6)
        """,
        STDIO,
    ),
    "detached_daemon": (
        """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c",
                    "import time,sys\\ntime.sleep(1.2)\\n"
                    "for p in sys.argv[1:3]:\\n"
                    "    try: open(p,'w').write('x')\\n"
                    "    except Exception: pass", "/tmp/{marker}", "{canary_dir}/{marker}", "{marker}"])
            os._exit(0)
        print(6)
        """,
        STDIO,
    ),
    "close_fds": (
        """
        import os
        for fd in range(0, 64):
            try:
                os.close(fd)
            except OSError:
                pass
        """,
        STDIO,
    ),
    "dup2_fake_result": (
        """
        import os, sys, json
        fake = json.dumps([{{"status": "ok", "rc": 0, "out": "6\\n", "ret": "2", "err": "",
                            "time": 0, "maxrss_kb": 0, "output_limit": False}}])
        for fd in range(1, 40):
            try:
                os.write(fd, fake.encode())
            except OSError:
                pass
        os.dup2(2, 1)
        sys.__stdout__.write(fake)
        print("[true]")
        """,
        STDIO,
    ),
    "monkeypatch_builtins": (
        """
        import builtins, json, sys, os
        builtins.print = lambda *a, **k: sys.__stdout__.write("6\\n")
        json.dumps = lambda *a, **k: "2"
        json.loads = lambda *a, **k: [True]
        builtins.exit = sys.exit = lambda *a: os._exit(0)
        def f(x):
            import gc
            for o in gc.get_objects():  # hunt for the expected outputs in memory
                if isinstance(o, dict) and "outputs" in o:
                    return o["outputs"][0]
            return None
        """,
        CALL,
    ),
    "read_ground_truth": (
        """
        import os, glob
        hits = []
        for root in ("/work", "/root", "/home", "/tmp", "/proc/{pid}/cwd"):
            try:
                hits += os.listdir(root)
            except Exception as e:
                hits.append(type(e).__name__)
        try:
            print(open("/proc/{pid}/cmdline").read())
        except Exception as e:
            print(type(e).__name__)
        try:
            print(open("/etc/shadow").read())
        except Exception as e:
            print(type(e).__name__)
        print(hits)
        """,
        STDIO,
    ),
    "raise_limits_setuid": (
        """
        import os, resource
        for r in (resource.RLIMIT_NPROC, resource.RLIMIT_AS, resource.RLIMIT_CPU):
            try:
                resource.setrlimit(r, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                print("RAISED", r)
            except Exception as e:
                print(type(e).__name__)
        for fn in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/")):
            try:
                fn(); print("ESCALATED")
            except Exception as e:
                print(type(e).__name__)
        while True:
            pass
        """,
        STDIO,
    ),
    "fill_disk": (
        """
        import os
        i = 0
        while True:
            try:
                with open("f%d_{marker}" % i, "wb") as fh:
                    fh.write(b"x" * (1 << 20))
            except OSError:
                pass
            i += 1
        """,
        STDIO,
    ),
    "thread_bomb": (
        """
        import threading, time
        while True:
            try:
                threading.Thread(target=time.sleep, args=(100,), daemon=True).start()
            except Exception:
                pass
        """,
        STDIO,
    ),
    "fd_exhaustion": (
        """
        fs = []
        while True:
            fs.append(open("/dev/null"))
        """,
        STDIO,
    ),
    "sigxfsz_ignored_huge_file": (
        """
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        with open("big_{marker}", "wb") as f:
            while True:
                f.write(b"y" * (1 << 20))
        """,
        STDIO,
    ),
    "ptrace_or_proc_mem_of_harness": (
        """
        import os
        try:
            with open("/proc/%d/mem" % os.getppid(), "rb") as f:
                print("READ", len(f.read(16)))
        except Exception as e:
            print(type(e).__name__)
        print(6)
        """,
        {"inputs": ["3\n"], "outputs": ["7\n"]},
    ),
}


MAY_PASS = {"detached_daemon", "fork_bomb_exec_marker"}  # they also print the right answer


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(info, world, name):
    source, gt = HOSTILE[name]
    source = textwrap.dedent(source).format(**world)
    v = run(info, source, gt)
    if name not in MAY_PASS:  # the rest cannot produce the expected output
        assert v.score == 0.0 and not v.correct, (name, v)
    detail = json.loads(v.detail)
    if name == "detached_daemon":
        time.sleep(1.6)  # the daemon would have written its file by now
    if name in ("infinite_loop", "sleep_past_timeout"):
        assert detail["tests"][0]["timeout"]
    if name == "huge_stdout":
        assert detail["tests"][0]["output_limit"]
    if name in ("memory_bomb", "memory_bomb_single"):
        assert detail["tests"][0]["memory_limit"] or detail["tests"][0]["timeout"]
    if name in ("socket_connect", "read_ground_truth", "raise_limits_setuid"):
        text = v.detail
        assert "CONNECTED" not in text and "ESCALATED" not in text and "RAISED" not in text
    assert os.getpid() == world["pid"]


def test_corpus_is_big_enough():
    assert len(HOSTILE) >= 25


# ---- honest programs, both test styles ------------------------------------------------------


@pytest.mark.parametrize(
    "src,gt,score",
    [
        ("n = int(input())\nprint(n * 2)", {"inputs": ["3\n", "5\n", "0\n"], "outputs": ["6\n", "10\n", "0"]}, 1.0),
        ("n = int(input())\nprint(n * 2)", {"inputs": ["3\n", "5\n"], "outputs": ["6\n", "11\n"]}, 0.5),
        (
            "import sys\ndata = sys.stdin.buffer.read().split()\nsys.stdout.write(' '.join(str(int(x) / 3) for x in data) + '   \\n\\n')",
            {"inputs": ["1 2\n"], "outputs": ["0.3333333 0.6666667\n"]},
            1.0,
        ),
        ("def f(a, b):\n    return a + b", {"fn_name": "f", "inputs": [[1, 2], [3, 4]], "outputs": [3, 7]}, 1.0),
        ("def f(a, b):\n    return (a, b)", {"fn_name": "f", "inputs": [[1, 2]], "outputs": [[[1, 2]]]}, 1.0),
        (
            "class Solution:\n    def f(self, xs):\n        return sorted(xs)",
            {"fn_name": "f", "inputs": [[[3, 1, 2]]], "outputs": [[1, 2, 3]]},
            1.0,
        ),
        ("def f(a):\n    return a * 1.0000001", {"fn_name": "f", "inputs": [[1.5], [2]], "outputs": [1.5, 3]}, 0.5),
    ],
)
def test_honest_programs(info, src, gt, score):
    v = run(info, src, gt)
    assert v.score == pytest.approx(score), v
    assert v.correct is (score == 1.0)


def test_comparison_rules():
    assert outputs_match("1 2  \n3\n\n\n", "1 2\n3")
    assert outputs_match("0.50000001\n", "0.5")
    assert not outputs_match("12345678901234567891\n", "12345678901234567890")
    assert not outputs_match("1 2\n", "1\n2")
    assert returns_match("[1, 2]", [1, 2]) and returns_match("5", [5])
    assert not returns_match("true", 1) and not returns_match(None, 1)


# ---- one program cannot affect the next (the fork server reuses one sandbox) -----------------

LEAVE_FILES = f"""
import os
open("/tmp/{MARKER}_file", "w").write("left behind")
open("{MARKER}_cwd", "w").write("left behind")
os.makedirs("/tmp/{MARKER}_dir/sub")
open("/tmp/{MARKER}_dir/sub/f", "w").write("x")
os.chmod("/tmp/{MARKER}_dir/sub", 0)
os.chmod("/tmp/{MARKER}_dir", 0)
print("wrote", os.getcwd())
"""
LEAVE_PROCESS = f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fd = os.open("/dev/null", os.O_RDWR)
        for k in (0, 1, 2):
            os.dup2(fd, k)
        os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 30 # {MARKER}"])
    os._exit(0)
time.sleep(0.2)
print("spawned")
"""
LEAVE_STATE = f"""
import builtins, json, os, ctypes
builtins.LEAK_{MARKER} = 1
json.LEAK = 1
os.environ["LEAK"] = "1"
libc = ctypes.CDLL(None, use_errno=True)
print("shm", libc.shmget(0, 4096, 0o1666))  # IPC_PRIVATE, IPC_CREAT | 0666
"""
LOOK = f"""
import builtins, json, os
seen = []
# the top level only, where program A writes: a walk of a busy machine's /tmp outlasts the time limit
for top in ("/tmp", "/dev/shm"):
    seen += [os.path.join(top, n) for n in os.listdir(top) if "{MARKER}" in n]
# a fresh working directory (root's entries are the sandbox's own mount points, e.g. of a venv
# that lives under /tmp)
seen += ["cwd " + n for n in os.listdir(".") if os.lstat(n).st_uid != 0]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open("/proc/%s/cmdline" % pid, "rb").read()
    except OSError:
        continue
    if b"{MARKER}" in cmd and int(pid) != os.getpid():
        seen.append("process " + pid)
if hasattr(builtins, "LEAK_{MARKER}") or hasattr(json, "LEAK") or "LEAK" in os.environ:
    seen.append("interpreter state")
for kind in ("shm", "sem", "msg"):
    if len(open("/proc/sysvipc/" + kind).read().strip().splitlines()) > 1:
        seen.append("System V " + kind)
print("CLEAN" if not seen else "SEEN %s" % seen)
"""


@pytest.mark.parametrize("leave", ["files", "process", "state", "daemon_holding_stdout"])
def test_nothing_survives_into_the_next_program(info, leave):
    """Program A leaves files (also an unreadable directory), a detached process or interpreter and
    System V IPC state; program B, run next (in the same fork server where it is one), finds none."""
    sandbox.shutdown_servers()
    limits = sandbox.Limits()
    program = {
        "files": LEAVE_FILES,
        "process": LEAVE_PROCESS,
        "state": LEAVE_STATE,
        "daemon_holding_stdout": LEAVE_PROCESS.replace("for k in (0, 1, 2)", "for k in (0,)"),
    }[leave]
    first = sandbox.run_python(program, b"", 10.0, 5, limits, info=info)
    assert first.returncode == 0 and first.stdout and not first.timed_out, first
    if leave == "daemon_holding_stdout" and info.kind == "bwrap":
        assert first.wall_s < 5  # the server ends what the program left instead of waiting on its pipe
    second = sandbox.run_python(LOOK, b"", 10.0, 5, limits, info=info)
    assert second.stdout.decode().strip() == "CLEAN", (first, second)
    if info.kind == "bwrap" and leave == "files":
        assert first.server is not None and second.server == first.server  # same sandbox, cleaned
    if info.kind == "bwrap" and leave == "state":
        assert second.server != first.server  # the IPC object tainted that sandbox: a fresh one ran B


def test_a_failing_fork_server_falls_back_to_a_one_shot_sandbox(monkeypatch, caplog):
    info = sandbox.sandbox_info()
    if info.kind != "bwrap" or not info.drop_uid:
        pytest.skip("the fork server runs only with bwrap, as root")

    def broken(_info):
        raise sandbox.ServerDied("simulated: the server did not start")

    sandbox.shutdown_servers()
    monkeypatch.setattr(sandbox, "_ForkServer", broken)
    result = sandbox.run_python("print('judged')", b"", 10.0, 5, sandbox.Limits(), info=info)
    assert result.stdout.strip() == b"judged" and result.server is None
    assert "fork server failed" in caplog.text
