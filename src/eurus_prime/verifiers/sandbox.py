"""Run untrusted Python in a sandbox that survives hostile input.

Two layers, chosen once per process (``sandbox_info()``, cached):

* **bubblewrap** (preferred, ``isolation="bwrap+rlimits+uid"`` as root): when ``bwrap`` is on PATH
  and a probe run with the exact flags succeeds. New net, pid, ipc and uts namespaces (no network
  at all: only a down loopback), ``--die-with-parent``, ``--new-session``, ``--clearenv``, a
  narrow read-only view of the file system (``/usr``, ``/etc``, the interpreter's prefixes; not the
  project, not ``/root``, not ``/home``), ``--proc``/``--dev``, and a private size-capped tmpfs at
  ``/tmp`` as the only writable place. When the harness exits, bwrap's pid 1 exits and the kernel
  kills everything left in the pid namespace (daemons included).
* **fall-back** (``rlimits+uid+netns``, or ``rlimits+uid+nonet-hook`` when a network namespace
  cannot be made): own session, a fresh temporary working directory removed afterwards, an emptied
  environment, ``python -I``, and, as root, ``unshare(CLONE_NEWNET)`` inside the child; when that
  fails an audit hook refusing socket creation/connect/bind (weaker: ``ctypes`` can bypass it).

**The fork server** (bwrap, as root; ``EURUS_PRIME_SANDBOX_SERVER=0`` turns it off): instead of
one bwrap and one interpreter per program, each concurrent caller gets a long-lived bwrap sandbox
whose warm interpreter (``ZYGOTE``, root inside with only CAP_SETUID/CAP_SETGID) forks a fresh
process per program: new session, its own uid slot, the limits below, cwd ``/tmp``. After the
program, a helper of the same uid kills all its processes and empties ``/tmp``; the zygote then
checks that no process of that uid, no file in ``/tmp`` or ``/dev/shm`` and no System V IPC object
is left (POSIX message queues are impossible: RLIMIT_MSGQUEUE 0). If anything is, that sandbox is
thrown away and the next program gets a fresh one. Memory is the fork's own copy. This removes the
interpreter start (~25 ms of CPU) from every program: 5x the runs per second
(``benchmarks/results/verifier_code.md``).

In both, the harness applies resource limits to itself before any untrusted code runs (RLIMIT_CPU,
RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_CORE=0), sets ``no_new_privs``, and,
when we are root, drops to a **dedicated unprivileged uid** (``UID_BASE + slot``). The slot is
claimed with an ``flock`` so no two concurrent sandboxes (threads or processes) share a uid. That
makes RLIMIT_NPROC effective (it is never enforced for uid 0) and per-sandbox, makes root-owned
files unwritable, and lets the parent kill *every* process of that uid afterwards
(``kill(-1, SIGKILL)`` from a helper that has become that uid): the fall-back's answer to
double-forked daemons that leave the process group.

What it cannot stop: reads of world-readable files inside the visible tree (``/etc``, ``/usr``,
the interpreter prefixes; in the fall-back the whole file system as far as "other" permissions
allow); CPU/memory contention with the host (no cgroups: RLIMIT_AS is per process, so up to
NPROC x AS in total); kernel exploits; in the fall-back without a network namespace, network via
``ctypes``/exec of a binary (the audit hook only covers the Python socket module).
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

UID_BASE = 1_600_000_000
UID_SLOTS = 256
LOCK_DIR = os.path.join(tempfile.gettempdir(), "eurus-prime-sandbox-uids")
TMPFS_BYTES = 64 << 20
CLONE_NEWNET = 0x40000000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Resource limits applied inside the sandbox (per process; CPU per test)."""

    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    open_files: int = 64
    processes: int = 32


@dataclass(frozen=True)
class SandboxInfo:
    kind: str  # "bwrap" or "rlimits"
    isolation: str  # e.g. "bwrap+rlimits+uid"
    verifier: str  # e.g. "code/bwrap-0.8.0"
    bwrap: str | None = None
    drop_uid: bool = False
    network: str = "netns"  # "netns" or "nonet-hook"
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class RunResult:
    stdout: bytes
    stderr: bytes
    returncode: int | None
    timed_out: bool
    wall_s: float
    uid: int | None
    server: str | None = None  #: the fork server's id (None: a one-shot run)


# ----------------------------------------------------------------------------------------------
# harness-side preamble: runs in the child before anything untrusted. argv[1] is a JSON config.
PREAMBLE = r"""
import json as _json, os as _os, resource as _res, sys as _sys
_cfg = _json.loads(_sys.argv[1])
def _lim(r, v):
    try:
        _res.setrlimit(r, (v, v))
    except (ValueError, OSError):
        pass
_lim(_res.RLIMIT_CORE, 0)
_lim(_res.RLIMIT_CPU, _cfg["cpu"])
_lim(_res.RLIMIT_AS, _cfg["mem"])
_lim(_res.RLIMIT_FSIZE, _cfg["fsize"])
_lim(_res.RLIMIT_NOFILE, _cfg["nofile"])
_lim(_res.RLIMIT_MSGQUEUE, 0)  # no POSIX message queue can outlive the program
if _cfg["nproc"]:
    _lim(_res.RLIMIT_NPROC, _cfg["nproc"])
import ctypes as _ct
_libc = _ct.CDLL(None, use_errno=True)
if _cfg["unshare_net"]:
    if _libc.unshare(0x40000000) != 0:
        _sys.stderr.write("sandbox: unshare(CLONE_NEWNET) failed\n")
        _sys.exit(97)
_libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
for _m in _cfg.get("preimport", ()):
    try:
        __import__(_m)
    except Exception:
        pass
if _cfg["uid"] is not None:
    _os.setgroups([])
    _os.setgid(_cfg["uid"])
    _os.setuid(_cfg["uid"])
    if _os.getuid() != _cfg["uid"] or _os.geteuid() != _cfg["uid"]:
        _sys.exit(98)
if _cfg["net_hook"]:
    import socket as _socket
    def _nonet(event, args):
        if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            raise PermissionError("network disabled in sandbox")
        if event == "socket.__new__" and args and args[1] != _socket.AF_UNIX:
            raise PermissionError("network disabled in sandbox")
    _sys.addaudithook(_nonet)
_libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: siblings of the same uid cannot ptrace us
del _ct, _libc, _lim
"""

# Modules imported before the uid drop in the fall-back, where the interpreter's prefix may not be
# readable by the sandbox uid (e.g. pyenv under a 0700 /root).
PREIMPORT = (
    "math",
    "cmath",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "re",
    "string",
    "fractions",
    "decimal",
    "random",
    "statistics",
    "operator",
    "copy",
    "typing",
    "array",
    "dataclasses",
    "io",
    "json",
    "time",
    "datetime",
    "queue",
    "enum",
    "numbers",
    "textwrap",
    "struct",
    "hashlib",
    "contextlib",
    "traceback",
    "socket",
    "select",
    "signal",
    "threading",
    "resource",
    "builtins",
    "sys",
    "os",
    "errno",
)


def _run(argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, timeout=timeout, env={}, check=False)


def _prefix_binds() -> list[str]:
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    paths.add(os.path.dirname(os.path.abspath(sys.executable)))
    out: list[str] = []
    for p in sorted(paths):
        if p.startswith("/usr/") or p == "/usr" or any(p.startswith(q + "/") for q in sorted(paths) if q != p):
            continue
        if os.path.isdir(p):
            # bwrap would create the missing parents 0700 (e.g. /root): make them traversable.
            parts = p.strip("/").split("/")[:-1]
            for k in range(1, len(parts) + 1):
                anc = "/" + "/".join(parts[:k])
                if anc not in ("/usr", "/etc", "/tmp") and not anc.startswith("/usr/"):
                    out += ["--perms", "0755", "--dir", anc]
            out += ["--ro-bind", p, p]
    return out


def bwrap_argv(bwrap: str, root: bool) -> list[str]:
    """The bubblewrap command line (without the program to run)."""
    argv = [
        bwrap,
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            argv += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            argv += ["--ro-bind", host, host]
    if os.path.isdir("/etc"):
        argv += ["--ro-bind", "/etc", "/etc"]
    # The private /tmp first: an interpreter that lives under /tmp (a checkout or venv there) is
    # bound on top of it, not hidden by it.
    argv += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    argv += _prefix_binds()
    argv += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp"]
    if root:
        # Only what the harness needs to drop to the sandbox uid; all other caps are dropped.
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return argv


@functools.lru_cache(maxsize=1)
def sandbox_info() -> SandboxInfo:
    """Probe once which isolation works here (bwrap, else the rlimits fall-back)."""
    root = os.geteuid() == 0
    notes: list[str] = []
    bwrap = shutil.which("bwrap")
    if bwrap and os.environ.get("EURUS_PRIME_NO_BWRAP") != "1":
        version = "unknown"
        try:
            version = _run([bwrap, "--version"]).stdout.decode().split()[-1]
            cfg = _config(
                uid=UID_BASE + UID_SLOTS if root else None, cpu=5, limits=Limits(), unshare_net=False, net_hook=False
            )
            probe = _run(
                bwrap_argv(bwrap, root)
                + [sys.executable, "-I", "-c", PREAMBLE + "import os; print(os.getuid())", json.dumps(cfg)]
            )
            ok = probe.returncode == 0 and probe.stdout.strip() == str(cfg["uid"] or os.getuid()).encode()
            if not ok:
                notes.append(f"bwrap probe failed: rc={probe.returncode} {probe.stderr[-300:]!r}")
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            ok = False
            notes.append(f"bwrap probe raised {exc!r}")
        if ok:
            iso = "bwrap+rlimits+uid" if root else "bwrap+rlimits"
            return SandboxInfo("bwrap", iso, f"code/bwrap-{version}", bwrap, root, "netns", tuple(notes))
    elif not bwrap:
        notes.append("bwrap not found on PATH")
    else:
        notes.append("EURUS_PRIME_NO_BWRAP=1")
    info = fallback_info()
    log.warning(
        "code sandbox: bubblewrap is not in force (%s); untrusted code runs in the weaker fall-back "
        "isolation %s (README, 'Outcome verifiers and the code sandbox')",
        "; ".join(notes),
        info.isolation,
    )
    return SandboxInfo(
        info.kind, info.isolation, info.verifier, None, info.drop_uid, info.network, tuple(notes) + info.notes
    )


@functools.lru_cache(maxsize=1)
def fallback_info() -> SandboxInfo:
    """The rlimits fall-back (no bwrap), probed once: is a network namespace possible?"""
    root = os.geteuid() == 0
    notes: list[str] = []
    network = "nonet-hook"
    if root:
        cfg = _config(uid=None, cpu=5, limits=Limits(), unshare_net=True, net_hook=False)
        try:
            probe = _run([sys.executable, "-I", "-c", PREAMBLE + "print('ok')", json.dumps(cfg)])
            if probe.returncode == 0:
                network = "netns"
            else:
                notes.append("unshare(CLONE_NEWNET) failed; socket audit hook instead")
        except (OSError, subprocess.SubprocessError) as exc:
            notes.append(f"netns probe raised {exc!r}")
    iso = "rlimits" + ("+uid" if root else "") + "+" + network
    return SandboxInfo("rlimits", iso, "code/rlimits", None, root, network, tuple(notes))


def _config(
    uid: int | None, cpu: int, limits: Limits, unshare_net: bool, net_hook: bool, preimport: tuple[str, ...] = ()
) -> dict:
    return {
        "uid": uid,
        "cpu": cpu,
        "mem": limits.memory_bytes,
        "fsize": limits.file_bytes,
        "nofile": limits.open_files,
        "nproc": limits.processes if uid is not None else 0,
        "unshare_net": unshare_net,
        "net_hook": net_hook,
        "preimport": list(preimport),
    }


# ----------------------------------------------------------------------------------------------
# uid slots

_slot_lock = threading.Lock()
_next_slot = 0


class _UidSlot:
    """A dedicated uid held (flock) for one sandbox run; cross-process and cross-thread unique."""

    def __init__(self) -> None:
        global _next_slot
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        with _slot_lock:
            start = _next_slot
            _next_slot = (_next_slot + 1) % UID_SLOTS
        for k in range(UID_SLOTS * 4):
            slot = (start + k) % UID_SLOTS
            fd = os.open(os.path.join(LOCK_DIR, f"{slot}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                if k and k % UID_SLOTS == 0:
                    time.sleep(0.05)
                continue
            self.fd, self.uid = fd, UID_BASE + slot
            return
        raise RuntimeError("no free sandbox uid slot")

    def release(self) -> None:
        os.close(self.fd)


def _become_and_kill_all(uid: int) -> None:
    # Runs in a forked helper (preexec_fn). Never reaches kill(-1) unless we ARE the sandbox uid.
    if uid < UID_BASE:
        os._exit(1)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or uid == 0:
        os._exit(1)
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)  # every process of this uid (not ourselves)
        except ProcessLookupError:
            break
        except PermissionError:
            break
    _remove_ipc_objects(uid)
    _remove_owned_files(uid)


def _remove_owned_files(uid: int, tops: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm")) -> None:
    """Delete what ``uid`` left at the top of the world-writable directories the fall-back shares
    with the host (a directory with all it holds; run as ``uid``, so nothing else is touched)."""
    for top in tops:
        try:
            names = os.listdir(top)
        except OSError:
            continue
        for name in names:
            path = os.path.join(top, name)
            try:
                if os.lstat(path).st_uid != uid:
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    for root, dirs, _files in os.walk(path):
                        for d in dirs:
                            os.chmod(os.path.join(root, d), 0o700)
                    os.chmod(path, 0o700)
                    for root, dirs, _files in os.walk(path):  # a chmod 000 directory below: open it
                        for d in dirs:
                            os.chmod(os.path.join(root, d), 0o700)
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass


_LIBC = ctypes.CDLL(None, use_errno=True)


def _remove_ipc_objects(uid: int) -> None:
    """Remove the System V shared memory, semaphores and message queues owned by ``uid`` (the
    fall-back shares the host's IPC namespace, so they would outlive the program)."""
    for kind, ident, remove in (
        ("shm", "shmid", lambda i: _LIBC.shmctl(i, 0, None)),
        ("sem", "semid", lambda i: _LIBC.semctl(i, 0, 0)),
        ("msg", "msqid", lambda i: _LIBC.msgctl(i, 0, None)),
    ):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header, *rows = [line.split() for line in f.read().splitlines()]
        except (OSError, ValueError):
            continue
        for row in rows:
            entry = dict(zip(header, row))
            if entry.get("uid") == str(uid) and entry.get(ident, "").isdigit():
                remove(int(entry[ident]))  # IPC_RMID; only the owner (us, now) may


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as the sandbox ``uid`` (a helper that becomes that uid)."""
    true = shutil.which("true") or "/bin/true"
    subprocess.run(
        [true],
        preexec_fn=lambda: _become_and_kill_all(uid),
        env={},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


# ----------------------------------------------------------------------------------------------


def run_python(
    harness: str,
    stdin: bytes,
    wall_timeout: float,
    cpu_seconds: int,
    limits: Limits = Limits(),
    info: SandboxInfo | None = None,
    bare: bool = False,
) -> RunResult:
    """Run ``python -I -c PREAMBLE+harness`` in the sandbox with ``stdin``; never raises on child
    misbehaviour. ``bare=True`` runs the same harness with no sandbox at all (benchmarks only)."""
    info = info or sandbox_info()
    if info.kind == "bwrap" and info.drop_uid and not bare and use_fork_server():
        try:
            return _run_in_server(harness, stdin, wall_timeout, cpu_seconds, limits, info)
        except (RuntimeError, ServerDied, OSError) as exc:
            # The one-shot path below passed the probe: no program goes unjudged for want of a
            # server (each program still gets the full isolation, only slower).
            log.warning("code sandbox: the fork server failed (%s); this program runs in a one-shot sandbox", exc)
    slot = _UidSlot() if (info.drop_uid and not bare) else None
    uid = slot.uid if slot else None
    workdir = None
    try:
        if bare:
            cfg = _config(None, cpu_seconds, limits, False, False)
            argv = [sys.executable, "-I", "-c", PREAMBLE + harness, json.dumps(cfg)]
            workdir = tempfile.mkdtemp(prefix="eurus_prime_code_")
            cwd = workdir
        elif info.kind == "bwrap":
            cfg = _config(uid, cpu_seconds, limits, False, False)
            argv = bwrap_argv(info.bwrap, os.geteuid() == 0) + [
                sys.executable,
                "-I",
                "-c",
                PREAMBLE + harness,
                json.dumps(cfg),
            ]
            cwd = "/"
        else:
            cfg = _config(
                uid,
                cpu_seconds,
                limits,
                unshare_net=info.network == "netns",
                net_hook=info.network != "netns",
                preimport=PREIMPORT if uid else (),
            )
            argv = [sys.executable, "-I", "-c", PREAMBLE + harness, json.dumps(cfg)]
            workdir = tempfile.mkdtemp(prefix="eurus_prime_code_")
            if uid is not None:
                os.chown(workdir, uid, uid)
            cwd = workdir
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={},
            start_new_session=True,
            close_fds=True,
        )
        timed_out = False
        reaper = None
        if uid is not None and info.kind != "bwrap" and not bare:
            # A process the program left behind may hold its pipes open: once the program has
            # exited, end every process of its uid, so that reading the pipes does not wait on it.
            reaper = threading.Thread(target=lambda: (proc.wait(), kill_uid(uid)), daemon=True, name="sandbox-reaper")
            reaper.start()
        try:
            out, err = proc.communicate(stdin, timeout=wall_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _killpg(proc.pid)
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:
                _killpg(proc.pid)
                proc.wait()
        wall = time.monotonic() - t0
        _killpg(proc.pid)  # anything left in the session (fall-back)
        if reaper is not None:
            # Its kill_uid ran once the program exited: wait for it (the uid slot must not be
            # released while it kills) rather than run a second one.
            reaper.join()
        elif uid is not None and (info.kind != "bwrap" or timed_out or proc.returncode != 0):
            kill_uid(uid)
        return RunResult(out, err, proc.returncode, timed_out, wall, uid)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        if slot:
            slot.release()


# ----------------------------------------------------------------------------------------------
# the fork server: one warm interpreter inside bubblewrap forks a fresh process per program

# Runs as ``python -I -c ZYGOTE`` inside bwrap, as root with only CAP_SETUID/CAP_SETGID. Protocol
# on fds 0/1: the host sends [4-byte length][JSON request][stdin bytes]; the zygote answers
# [4-byte length][JSON result]. Per program: fork; the child takes a new session, fds 0-2 on
# pipes, cwd /tmp, the resource limits, no_new_privs, the program's own uid, not dumpable, then
# runs the harness with exec() in a fresh namespace. After it ends (or its wall time is up), a
# helper that becomes the same uid kills every process of that uid and empties /tmp. Then the
# zygote CHECKS that nothing survived: no process of that uid, nothing in /tmp or /dev/shm, no
# System V IPC object. If anything did, it reports ``tainted`` and exits, and the host starts a
# fresh sandbox: no file, process or IPC object outlives its program, and memory is the fork's.
SERVER_MARK = "eurus-prime sandbox fork server"
ZYGOTE = r"""# eurus-prime sandbox fork server
import base64, builtins, ctypes, json, os, resource, select, signal, struct, sys, time
import math, threading, traceback  # the harnesses' imports, loaded once
libc = ctypes.CDLL(None, use_errno=True)
CTL_IN, CTL_OUT = os.dup(0), os.dup(1)
null = os.open("/dev/null", os.O_RDWR)
os.dup2(null, 0); os.dup2(null, 1)

def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(CTL_IN, n - len(buf))
        if not chunk:
            os._exit(0)
        buf += chunk
    return buf

def send(obj):
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack("!I", len(data)) + data)
    while view:
        view = view[os.write(CTL_OUT, view):]

def child(req, code, r0, w1, w2):
    try:
        os.setsid()
        os.dup2(r0, 0); os.dup2(w1, 1); os.dup2(w2, 2)
        os.closerange(3, 65536)
        os.chdir("/tmp")
        R = resource
        for lim, val in ((R.RLIMIT_CORE, 0), (R.RLIMIT_CPU, req["cpu"]), (R.RLIMIT_AS, req["mem"]),
                         (R.RLIMIT_FSIZE, req["fsize"]), (R.RLIMIT_NOFILE, req["nofile"]),
                         (R.RLIMIT_NPROC, req["nproc"]), (R.RLIMIT_MSGQUEUE, 0)):
            R.setrlimit(lim, (val, val))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            os._exit(96)
        uid = req["uid"]
        os.setgroups([]); os.setgid(uid); os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid:
            os._exit(98)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
        sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", closefd=False)
        sys.argv = ["-c", "{}"]
        status = 0
        try:
            exec(code, {"__name__": "__main__", "__builtins__": builtins})
        except SystemExit as exc:
            c = exc.code
            status = c if isinstance(c, int) else (0 if c is None else 1)
        except BaseException:
            traceback.print_exc()
            status = 1
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:
                pass
        os._exit(status & 0xFF)
    finally:
        os._exit(99)

def clean(uid, files=True):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([]); os.setgid(uid); os.setuid(uid)
            if os.getuid() != uid or uid == 0:
                os._exit(1)
            for _ in range(200):
                try:
                    os.kill(-1, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    break
            # Only what appeared since the sandbox started: the mount points of the interpreter's
            # own prefix, when it lives under /tmp, are root's, read-only and left alone.
            tops = [os.path.join("/tmp", n) for n in os.listdir("/tmp") if n not in BASE["/tmp"]] if files else []
            for top in tops:
                if os.path.islink(top) or not os.path.isdir(top):
                    try:
                        os.unlink(top)
                    except OSError:
                        pass
                    continue
                for _ in range(2):  # the second pass after opening up chmod-000 directories
                    for root, dirs, names in os.walk(top, topdown=True):
                        for name in dirs:
                            try:
                                os.chmod(os.path.join(root, name), 0o700)
                            except OSError:
                                pass
                    for root, dirs, names in os.walk(top, topdown=False):
                        for name in names + dirs:
                            path = os.path.join(root, name)
                            try:
                                (os.rmdir if os.path.isdir(path) and not os.path.islink(path) else os.unlink)(path)
                            except OSError:
                                pass
                    try:
                        os.chmod(top, 0o700)
                        os.rmdir(top)
                        break
                    except OSError:
                        pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)

def leftovers(uid):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/status" % pid) as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                found.append("process %s" % pid)
                            break
            except OSError:
                pass
    for d in ("/tmp", "/dev/shm"):
        try:
            found += ["file %s/%s" % (d, n) for n in os.listdir(d) if n not in BASE[d]]
        except OSError:
            pass
    for kind in ("shm", "sem", "msg"):
        try:
            with open("/proc/sysvipc/" + kind) as f:
                if len(f.read().strip().splitlines()) > 1:
                    found.append("System V %s object" % kind)
        except OSError:
            pass
    return found

def run(req, code, data):
    r0, w0 = os.pipe(); r1, w1 = os.pipe(); r2, w2 = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(w0); os.close(r1); os.close(r2); os.close(CTL_IN); os.close(CTL_OUT)
        child(req, code, r0, w1, w2)
    os.close(r0); os.close(w1); os.close(w2)
    deadline = t0 + req["wall"]
    out, err = bytearray(), bytearray()
    cap = req["max_capture"]
    view = memoryview(data)
    if not view:
        os.close(w0); w0 = None
    else:
        os.set_blocking(w0, False)
    readers = {r1: out, r2: err}
    timed_out = False
    status = None
    while readers:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = status is None
            break
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                # The program is over; a process it left behind may still hold the pipes: end them
                # all now, then read what is left.
                status = st
                clean(req["uid"], files=False)
                deadline = min(deadline, time.monotonic() + 2.0)
        wl = [w0] if w0 is not None else []
        rr, ww, _ = select.select(list(readers), wl, [], min(left, 0.05 if status is None else left))
        for fd in rr:
            chunk = os.read(fd, 65536)
            if not chunk:
                os.close(fd); del readers[fd]
            elif len(readers[fd]) < cap:
                readers[fd] += chunk[: cap - len(readers[fd])]
        if ww:
            try:
                view = view[os.write(w0, view[:65536]):]
            except OSError:
                view = view[:0]
            if not view:
                os.close(w0); w0 = None
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for fd in list(readers) + ([w0] if w0 is not None else []):
        os.close(fd)
    if status is None:
        _, status = os.waitpid(pid, 0)
    wall = time.monotonic() - t0
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    clean(req["uid"])
    return {"rc": rc, "timed_out": timed_out, "wall": wall,
            "stdout": base64.b64encode(bytes(out)).decode(), "stderr": base64.b64encode(bytes(err)).decode(),
            "tainted": leftovers(req["uid"]), "server": TOKEN}

codes = {}
BASE = {d: set(os.listdir(d)) if os.path.isdir(d) else set() for d in ("/tmp", "/dev/shm")}
TOKEN = os.urandom(8).hex()  # tells one sandbox from the next (every zygote is pid 2 in its own)
send({"ready": TOKEN})
while True:
    (n,) = struct.unpack("!I", read_exact(4))
    req = json.loads(read_exact(n))
    data = read_exact(req["stdin_len"])
    if req.get("harness") is not None:
        codes[req["key"]] = compile(req["harness"], "<harness>", "exec")
    result = run(req, codes[req["key"]], data)
    send(result)
    if result["tainted"]:
        os._exit(0)
"""

SERVER_START_TIMEOUT_S = 20.0
MAX_CAPTURE_BYTES = 16 << 20  #: stdout/stderr kept per program (the harness prints far less)


class ServerDied(RuntimeError):
    """The fork server ended before it answered (the caller starts a fresh one)."""


class _ForkServer:
    """A bwrap sandbox whose warm interpreter forks one fresh process per program."""

    def __init__(self, info: SandboxInfo) -> None:
        argv = bwrap_argv(info.bwrap, os.geteuid() == 0) + [sys.executable, "-I", "-c", ZYGOTE]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={},
            start_new_session=True,
            close_fds=True,
        )
        self.harnesses: set[str] = set()
        self.alive = True
        hello = self._read(SERVER_START_TIMEOUT_S)
        if hello is None or "ready" not in hello:
            self.close()
            raise ServerDied("the sandbox fork server did not start")
        self.pid = hello["ready"]

    def _read(self, timeout: float) -> dict | None:
        import select

        fd = self.proc.stdout.fileno()
        buf = b""
        need = 4
        deadline = time.monotonic() + timeout
        header = True
        while True:
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    return None
                chunk = os.read(fd, need - len(buf))
                if not chunk:
                    return None
                buf += chunk
            if not header:
                return json.loads(buf)
            need, buf, header = int.from_bytes(buf, "big"), b"", False

    def run(
        self, harness: str, stdin: bytes, wall_timeout: float, cpu_seconds: int, limits: Limits, uid: int
    ) -> RunResult:
        import base64
        import hashlib

        key = hashlib.sha256(harness.encode()).hexdigest()[:16]
        req = {
            "key": key,
            "harness": None if key in self.harnesses else harness,
            "stdin_len": len(stdin),
            "uid": uid,
            "cpu": cpu_seconds,
            "mem": limits.memory_bytes,
            "fsize": limits.file_bytes,
            "nofile": limits.open_files,
            "nproc": limits.processes,
            "wall": wall_timeout,
            "max_capture": MAX_CAPTURE_BYTES,
        }
        body = json.dumps(req).encode()
        try:
            self.proc.stdin.write(len(body).to_bytes(4, "big") + body + stdin)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise ServerDied(f"the sandbox fork server is gone ({exc})") from exc
        self.harnesses.add(key)
        # The zygote enforces the wall time itself; this only guards against a wedged zygote.
        answer = self._read(wall_timeout + 10.0)
        if answer is None:
            self.close()
            raise ServerDied("the sandbox fork server did not answer")
        if answer["tainted"]:
            log.info("code sandbox: a program left %s; starting a fresh sandbox", answer["tainted"][:3])
            self.close()
        return RunResult(
            base64.b64decode(answer["stdout"]),
            base64.b64decode(answer["stderr"]),
            answer["rc"],
            answer["timed_out"],
            answer["wall"],
            uid,
            server=answer["server"],
        )

    def close(self) -> None:
        self.alive = False
        _killpg(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


_IDLE: list[_ForkServer] = []
_IDLE_LOCK = threading.Lock()


_SPAWNER: list = []  # one long-lived thread starts every server (see _take_server)


def _take_server(info: SandboxInfo) -> _ForkServer:
    with _IDLE_LOCK:
        while _IDLE:
            server = _IDLE.pop()
            if server.alive and server.proc.poll() is None:
                return server
        if not _SPAWNER:
            from concurrent.futures import ThreadPoolExecutor

            _SPAWNER.append(ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner"))
        spawner = _SPAWNER[0]
    # bwrap's --die-with-parent follows the THREAD that started it: a server started from a
    # short-lived worker thread would die with that thread. The spawner thread lives on.
    return spawner.submit(_ForkServer, info).result()


def _give_back(server: _ForkServer) -> None:
    if server.alive:
        with _IDLE_LOCK:
            _IDLE.append(server)


def shutdown_servers() -> None:
    """Stop every idle fork server (tests, clean exits); the next run starts a fresh one."""
    with _IDLE_LOCK:
        servers, _IDLE[:] = list(_IDLE), []
    for server in servers:
        server.close()


def _forget_servers_in_child() -> None:
    _IDLE.clear()  # a forked process must not share the parent's pipes to its servers
    _SPAWNER.clear()  # nor its spawner thread (threads do not survive fork)


os.register_at_fork(after_in_child=_forget_servers_in_child)
atexit.register(shutdown_servers)


def use_fork_server() -> bool:
    """Whether bwrap runs go through the fork server (``EURUS_PRIME_SANDBOX_SERVER=0``: one bwrap
    and one interpreter per program, as before)."""
    return os.environ.get("EURUS_PRIME_SANDBOX_SERVER", "1") != "0"


def _run_in_server(
    harness: str, stdin: bytes, wall_timeout: float, cpu_seconds: int, limits: Limits, info: SandboxInfo
) -> RunResult:
    slot = _UidSlot()
    try:
        for attempt in range(2):
            try:
                server = _take_server(info)
            except (ServerDied, OSError) as exc:
                if attempt:
                    raise RuntimeError(f"code sandbox: no fork server ({exc})") from exc
                continue
            try:
                result = server.run(harness, stdin, wall_timeout, cpu_seconds, limits, slot.uid)
            except ServerDied:
                kill_uid(slot.uid)  # the program may have started: nothing of its uid survives
                if attempt:
                    raise
                continue
            _give_back(server)
            return result
        raise RuntimeError("unreachable")
    finally:
        slot.release()


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["Limits", "RunResult", "SandboxInfo", "kill_uid", "run_python", "sandbox_info"]
