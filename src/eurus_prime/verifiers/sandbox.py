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
    "math", "cmath", "collections", "itertools", "functools", "heapq", "bisect", "re", "string",
    "fractions", "decimal", "random", "statistics", "operator", "copy", "typing", "array",
    "dataclasses", "io", "json", "time", "datetime", "queue", "enum", "numbers", "textwrap",
    "struct", "hashlib", "contextlib", "traceback", "socket", "select", "signal", "threading",
    "resource", "builtins", "sys", "os", "errno",
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
                if anc not in ("/usr", "/etc") and not anc.startswith("/usr/"):
                    out += ["--perms", "0755", "--dir", anc]
            out += ["--ro-bind", p, p]
    return out


def bwrap_argv(bwrap: str, root: bool) -> list[str]:
    """The bubblewrap command line (without the program to run)."""
    argv = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = "/" + name
        if os.path.islink(host):
            argv += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            argv += ["--ro-bind", host, host]
    if os.path.isdir("/etc"):
        argv += ["--ro-bind", "/etc", "/etc"]
    argv += _prefix_binds()
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp", "--chdir", "/tmp"]
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
            cfg = _config(uid=UID_BASE + UID_SLOTS if root else None, cpu=5, limits=Limits(),
                          unshare_net=False, net_hook=False)
            probe = _run(bwrap_argv(bwrap, root) + [sys.executable, "-I", "-c",
                         PREAMBLE + "import os; print(os.getuid())", json.dumps(cfg)])
            ok = probe.returncode == 0 and probe.stdout.strip() == str(cfg["uid"] or os.getuid()).encode()
            if not ok:
                notes.append(f"bwrap probe failed: rc={probe.returncode} {probe.stderr[-300:]!r}")
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            ok = False
            notes.append(f"bwrap probe raised {exc!r}")
        if ok:
            iso = "bwrap+rlimits+uid" if root else "bwrap+rlimits"
            return SandboxInfo("bwrap", iso, f"code/bwrap-{version}", bwrap, root, "netns",
                               tuple(notes))
    elif not bwrap:
        notes.append("bwrap not found on PATH")
    else:
        notes.append("EURUS_PRIME_NO_BWRAP=1")
    info = fallback_info()
    log.warning("code sandbox: bubblewrap is not in force (%s); untrusted code runs in the weaker "
                "fall-back isolation %s (README, 'Code execution')", "; ".join(notes), info.isolation)
    return SandboxInfo(info.kind, info.isolation, info.verifier, None, info.drop_uid, info.network,
                       tuple(notes) + info.notes)


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


def _config(uid: int | None, cpu: int, limits: Limits, unshare_net: bool, net_hook: bool,
            preimport: tuple[str, ...] = ()) -> dict:
    return {"uid": uid, "cpu": cpu, "mem": limits.memory_bytes, "fsize": limits.file_bytes,
            "nofile": limits.open_files, "nproc": limits.processes if uid is not None else 0,
            "unshare_net": unshare_net, "net_hook": net_hook, "preimport": list(preimport)}


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


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as the sandbox ``uid`` (a helper that becomes that uid)."""
    true = shutil.which("true") or "/bin/true"
    subprocess.run([true], preexec_fn=lambda: _become_and_kill_all(uid), env={},
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


# ----------------------------------------------------------------------------------------------


def run_python(harness: str, stdin: bytes, wall_timeout: float, cpu_seconds: int,
               limits: Limits = Limits(), info: SandboxInfo | None = None,
               bare: bool = False) -> RunResult:
    """Run ``python -I -c PREAMBLE+harness`` in the sandbox with ``stdin``; never raises on child
    misbehaviour. ``bare=True`` runs the same harness with no sandbox at all (benchmarks only)."""
    info = info or sandbox_info()
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
                sys.executable, "-I", "-c", PREAMBLE + harness, json.dumps(cfg)]
            cwd = "/"
        else:
            cfg = _config(uid, cpu_seconds, limits, unshare_net=info.network == "netns",
                          net_hook=info.network != "netns", preimport=PREIMPORT if uid else ())
            argv = [sys.executable, "-I", "-c", PREAMBLE + harness, json.dumps(cfg)]
            workdir = tempfile.mkdtemp(prefix="eurus_prime_code_")
            if uid is not None:
                os.chown(workdir, uid, uid)
            cwd = workdir
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env={}, start_new_session=True,
                                close_fds=True)
        timed_out = False
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
        if uid is not None and (info.kind != "bwrap" or timed_out or proc.returncode != 0):
            kill_uid(uid)
        return RunResult(out, err, proc.returncode, timed_out, wall, uid)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        if slot:
            slot.release()


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["Limits", "RunResult", "SandboxInfo", "kill_uid", "run_python", "sandbox_info"]
