"""The jail: Linux namespaces around the zygote and each solution process. Stdlib only.

The zygote calls `enter(plan)` first thing, before it imports torch:

1. As root, it unshares mount, PID, network, IPC and UTS namespaces; as any other user it
   first makes a user namespace mapping itself to root there (unprivileged user
   namespaces), then does the same. It forks: the parent stays behind as a waiter, the
   child becomes PID 1 of the new PID namespace and carries on as the zygote.
2. It builds a new root on a tmpfs holding only read-only bind mounts of what a solution
   needs (the system's /usr, /etc and libraries, the Python installation and its
   site-packages, the sandbox package and the solutions directories), each at its own
   absolute path, plus /dev's harmless devices, a /proc of its own PID namespace and an
   empty /tmp. It pivots into that root, makes it read-only, and drops to the sandbox
   uid (root only: another uid than the judge's, and no supplementary groups).
3. It enters a user namespace of its own, so that it may give each solution process new
   namespaces while every mount it made stays locked.

Each solution process then gets `isolate_child()`: new mount, PID, network and IPC
namespaces (so exercises cannot see or reach each other), its own /proc, a private tmpfs
as cwd, $HOME and $TMPDIR, a loopback interface of its own, and no capabilities left.

Where any of this is impossible (not Linux, user namespaces disabled), `available()` says
why, and grading falls back to plain process isolation.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import socket
import struct
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}

SANDBOX_UID = 64_000  # the solution side's uid when the judge runs as root
SCRATCH_MOUNT = "/grade"  # a private tmpfs per solution process, holding its cwd, $HOME and $TMPDIR
SCRATCH = SCRATCH_MOUNT + "/work"
ZYGOTE_TMP = SCRATCH_MOUNT + "/zygote"  # the zygote's own scratch, hidden from each child by its tmpfs
SCRATCH_MB = 512
DEVICES = ["null", "zero", "full", "random", "urandom"]
SYSTEM_DIRS = ["/usr", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/opt/conda"]
SIMULATE_UNAVAILABLE = "GRADE_SANDBOX_SIMULATE_UNAVAILABLE"  # tests: behave as if namespaces were off

_libc: Any = None
_tmp_binds: list[str] = []


class JailError(OSError):
    """A namespace, mount or identity change failed; the message says which."""


def libc() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result == -1:
        e = ctypes.get_errno()
        raise JailError(e, f"{what}: {os.strerror(e)}")
    return result


def unshare(flags: int) -> None:
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(
        libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {source or fstype} on {target}",
    )


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    try:
        libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the wire's EOF still ends the child
        pass


# --- availability ----------------------------------------------------------------------------


def available() -> tuple[bool, str]:
    """Whether the full sandbox can be built here, and if not, a sentence saying why."""
    if os.environ.get(SIMULATE_UNAVAILABLE):
        return False, "namespaces are disabled for this run (GRADE_SANDBOX_SIMULATE_UNAVAILABLE is set)"
    if sys.platform != "linux":
        return False, f"the sandbox needs Linux namespaces, and this is {platform.system()}"
    if platform.machine() not in SYS_PIVOT_ROOT:
        return False, f"the sandbox does not know the pivot_root call on {platform.machine()}"
    pid = os.fork()
    if pid == 0:  # try the namespaces a solution process needs, in a throwaway child
        code = 1
        try:
            if os.getuid() != 0:
                unshare(CLONE_NEWUSER)
            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
            code = 0
        except BaseException:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return True, ""
    if os.getuid() == 0:
        return False, "creating namespaces failed even as root (is this a locked-down container? run it with --privileged, or allow unshare)"
    return False, (
        "unprivileged user namespaces are disabled on this machine; enable them "
        "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
        "sysctl kernel.apparmor_restrict_unprivileged_userns=0), or grade as root"
    )


# --- the zygote's jail -------------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _map_self() -> None:
    """Map the caller's uid and gid to root of the user namespace it just made."""
    uid, gid = os.geteuid(), os.getegid()
    unshare(CLONE_NEWUSER)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1\n")
    _write("/proc/self/gid_map", f"0 {gid} 1\n")


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _bind(root: str, source: str, writable: bool = False) -> None:
    """Bind `source` read-only at the same absolute path under `root`."""
    real = os.path.realpath(source)
    if not os.path.exists(real):
        return
    target = root + real
    if os.path.isdir(real):
        _mkdirs(target)
    else:
        _mkdirs(os.path.dirname(target))
        if not os.path.exists(target):
            open(target, "w").close()
    mount(real, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if writable else MS_RDONLY)
    mount(None, target, None, flags)
    if source != real and not os.path.lexists(root + source):  # /bin -> usr/bin and the like
        _mkdirs(os.path.dirname(root + source))
        os.symlink(os.readlink(source) if os.path.islink(source) else real, root + source)


def _loopback_up() -> None:
    """Bring up the namespace's own loopback interface (SIOCSIFFLAGS, IFF_UP | IFF_RUNNING)."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0x1 | 0x40, b"")
        fcntl.ioctl(s.fileno(), 0x8914, ifreq)


def _pivot(root: str) -> None:
    os.chdir(root)
    _check(libc().syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    _check(libc().umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")


def _drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # Changing uid made the process undumpable, which leaves /proc/self to root; the
    # zygote writes its own uid_map next, and its children are invisible to all but it.
    libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def build_root(plan: dict[str, Any], real_root: bool) -> None:
    """Steps 2 and 3 of the module docstring, in the zygote (PID 1 of its namespace)."""
    root = plan["root"]
    libc().sethostname(b"sandbox", 7)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    for path in SYSTEM_DIRS:
        if os.path.exists(path):
            _bind(root, path)
    bound: list[str] = []
    for path in sorted(plan["binds"]):
        if not any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound):
            _bind(root, path)
            bound.append(path)
    # /dev: a few harmless devices, GPUs when there are any, and a shared-memory mount point.
    _mkdirs(root + "/dev")
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    devices = DEVICES + [d for d in os.listdir("/dev") if d.startswith("nvidia")]
    for name in devices:
        if os.path.exists("/dev/" + name) and not os.path.isdir("/dev/" + name):
            target = f"{root}/dev/{name}"
            open(target, "w").close()
            mount("/dev/" + name, target, None, MS_BIND)
    for link, to in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2")]:
        os.symlink(to, f"{root}/dev/{link}")
    _mkdirs(root + "/dev/shm")
    mount(None, root + "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    if os.path.isdir("/sys"):
        _bind(root, "/sys")
    _mkdirs(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mkdirs(root + "/tmp")
    os.chmod(root + "/tmp", 0o1777)
    global _tmp_binds  # bound paths under /tmp, re-bound above each solution's private /tmp
    _tmp_binds = [p for p in bound if os.path.realpath(p).startswith("/tmp/")]
    _mkdirs(root + SCRATCH_MOUNT)
    mount("tmpfs", root + SCRATCH_MOUNT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
    _mkdirs(root + ZYGOTE_TMP)
    os.chmod(root + ZYGOTE_TMP, 0o1777)
    # The grader package shows only its sandbox subpackage, beside an empty __init__: a
    # tmpfs hides the rest of it where it is installed inside a bound site-packages.
    package = plan["package"]
    _mkdirs(root + package)
    mount("tmpfs", root + package, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    open(os.path.join(root + package, "__init__.py"), "w").close()
    _bind(root, os.path.join(package, "sandbox"))
    if os.path.realpath(package).startswith("/tmp/") and not any(package.startswith(b.rstrip("/") + "/")
                                                                  for b in _tmp_binds):
        _tmp_binds.append(package)  # a checkout in /tmp (not inside a bound folder): kept above the private /tmp
    _pivot(root)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if real_root:
        _drop_to(plan.get("uid", SANDBOX_UID), plan.get("gid", SANDBOX_UID))
    _map_self()
    die_with_parent()  # a change of credentials cleared it


def enter(plan: dict[str, Any]) -> None:
    """Put this process, the zygote, in the jail (see the module docstring).

    Returns in the jailed zygote. The process that called it stays outside as a waiter
    and exits with the zygote's status; it never returns.
    """
    real_root = os.getuid() == 0
    if not real_root:
        _map_self()
    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    pid = os.fork()
    if pid != 0:  # the waiter: keeps nothing open, and exits as the zygote does
        _close_all_but_stdio()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _exit_as(pid)
    die_with_parent()
    build_root(plan, real_root)


# --- each solution process ---------------------------------------------------------------------


def _close_all_but_stdio() -> None:
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _exit_as(pid: int) -> None:
    """Wait for `pid`, then end this process the way it ended (the same signal or code)."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def isolate_child() -> int:
    """In a fresh fork of the zygote: new namespaces, then fork the solution process.

    Returns 0 in the solution process (PID 1 of its own namespace). In the intermediate
    process it never returns: it waits and exits as the solution process did.
    """
    die_with_parent()
    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
    pid = os.fork()
    if pid != 0:  # hold nothing of the solution's (its wire, its capture), and exit as it does
        _close_all_but_stdio()
        _exit_as(pid)
    die_with_parent()
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", SCRATCH_MOUNT, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,size={SCRATCH_MB}m")
    # A private /tmp; what was bound beneath it (solutions in /tmp) is bound again on top,
    # from descriptors opened before the tmpfs hid it.
    kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in _tmp_binds if os.path.isdir(path)]
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={SCRATCH_MB}m")
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700,size=64m")
    os.mkdir(SCRATCH, 0o700)
    _loopback_up()
    return 0


def drop_privileges() -> None:
    """No capabilities, in any set, for this process or anything it starts."""
    for cap in range(64):
        if libc().prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 and ctypes.get_errno() == errno.EINVAL:
            break

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)
    data = (Data * 2)()
    _check(libc().capset(ctypes.byref(header), ctypes.byref(data)), "capset")
    _check(libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
