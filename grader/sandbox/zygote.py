"""The zygote: a warm process that has imported torch and numpy and forks solution processes.

Started by the judge as `python -c BOOT FD PLAN` with an allow-listed environment, where FD
is its end of a control socket and PLAN (JSON) says which isolation to build and what the
sandbox may see. With `"isolation": "sandbox"` it first enters the jail (`jail.enter`), and
every solution process gets namespaces of its own (`jail.isolate_child`); with "process"
(no namespaces on this machine) each is only a new session with limits. It never
initialises CUDA, so each forked child may. Requests are JSON lines (`protocol.ZygoteOp`):

    {"op": "spawn", ...} + fds [wire, capture] -> {"pid": N}
    {"op": "wait", "pid": N, "timeout": s}     -> {"status": int | None}
    {"op": "kill", "pid": N}                     -> {"killed": N}
    {"op": "dump_stack", "pid": N}               -> {"signalled": pid | None}
    {"op": "exit"}

The zygote dies with the judge (PR_SET_PDEATHSIG), and each solution process with it.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

from grader.sandbox import jail

CONTROL_MAX = 1 << 16
FILE_SIZE_LIMIT = 256 << 20
NPROC_LIMIT = 256
NOFILE_LIMIT = 1024
STACK_SIGNAL = signal.SIGUSR1


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def virtual_memory_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def set_limits(request: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    cpu = int(request["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    for limit, value in ((resource.RLIMIT_NPROC, NPROC_LIMIT), (resource.RLIMIT_NOFILE, NOFILE_LIMIT)):
        soft, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))
    # The address-space cap counts what torch has already mapped, so it is added on top.
    try:
        cap = virtual_memory_bytes() + int(request["memory_mb"]) * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):
        pass


def become_solution(control: socket.socket, wire_fd: int, capture_fd: int, request: dict[str, Any],
                    sandboxed: bool) -> None:
    """In the forked child: isolate, limit, then serve the judge until it hangs up."""
    control.close()
    if sandboxed:
        jail.isolate_child()  # returns in the solution process, PID 1 of its own namespace
        cwd = jail.SCRATCH
    else:
        os.setsid()
        cwd = request["cwd"]
    jail.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-large writes fail, not kill
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(capture_fd, 1)
    os.dup2(capture_fd, 2)
    os.close(capture_fd)
    faulthandler.enable(file=sys.__stderr__, all_threads=False)
    # On the judge's word (DUMP_STACK, before it kills a call that ran out of time): every
    # thread's stack, so the student is told the line their code was on.
    faulthandler.register(STACK_SIGNAL, file=sys.__stderr__, all_threads=True)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update({"HOME": cwd, "TMPDIR": cwd})
    import tempfile

    tempfile.tempdir = None
    sys.path[:] = [p for p in sys.path if p and os.path.isdir(p)]
    import torch

    torch.set_num_threads(int(request.get("threads", 1)))
    set_limits(request)
    if sandboxed:
        jail.drop_privileges()
    from grader.sandbox import server

    server.run(socket.socket(fileno=wire_fd), request)


def solution_below(waiter: int) -> int | None:
    """The child of `waiter`: the solution process that `jail.isolate_child` forked."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == waiter:
                        return int(entry)
            except (OSError, IndexError, ValueError):
                continue
    return None


def kill_tree(root: int) -> None:
    """SIGKILL `root` and every process in its session, its process group or below it.

    Needed only without the sandbox; in it, a solution's PID namespace dies with it.
    """
    for _ in range(5):
        stats: dict[int, tuple[int, int, int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    stats[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[3]))
                except (OSError, IndexError, ValueError):
                    continue
        victims = {root} if root in stats else set()
        victims |= {p for p, (_, pgrp, sid) in stats.items() if pgrp == root or sid == root}
        changed = True
        while changed:
            changed = False
            for p, (ppid, _, _) in stats.items():
                if ppid in victims and p not in victims:
                    victims.add(p)
                    changed = True
        victims.discard(os.getpid())
        if not victims:
            return
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def main() -> None:
    jail.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the judge's to handle
    control = socket.socket(fileno=int(sys.argv[1]))
    plan = json.loads(sys.argv[2])
    sandboxed = plan["isolation"] == "sandbox"
    if sandboxed:
        try:
            jail.enter(plan)
        except OSError as e:
            send(control, {"failed": f"the sandbox could not be built: {e}"})
            return
        sys.path[:] = [p for p in sys.path if p and os.path.isdir(p)]
        os.environ["TMPDIR"] = jail.ZYGOTE_TMP  # what preloaded libraries cache; no child sees it
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import grader.sandbox.server  # noqa: F401
    from grader.sandbox.protocol import (
        ZygoteOp,  # only now: it imports torch, after the jail is built
    )

    statuses: dict[int, int] = {}

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            statuses[pid] = status

    send(control, {"ready": os.getpid(), "isolation": plan["isolation"]})
    preload(plan.get("preload", []))  # while the judge collects its checks
    buffer = b""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, CONTROL_MAX, 4)
        except OSError:
            return
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            reap()
            op = request["op"]
            if op == ZygoteOp.EXIT:
                os._exit(0)  # nothing to flush; tearing torch down took a third of a second
            if op == ZygoteOp.SPAWN:
                preload(request.get("preload", []))
                wire_fd, capture_fd = fds.pop(0), fds.pop(0)
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        become_solution(control, wire_fd, capture_fd, request, sandboxed)
                    except BaseException:
                        code = 70
                    finally:
                        os._exit(code)
                os.close(wire_fd)
                os.close(capture_fd)
                send(control, {"pid": pid})
            elif op == ZygoteOp.KILL:
                pid = int(request["pid"])
                if sandboxed:  # its namespace's PID 1 dies with it, and with that everything inside
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                else:
                    kill_tree(pid)
                send(control, {"killed": pid})
            elif op == ZygoteOp.DUMP_STACK:
                pid = int(request["pid"])
                # In the sandbox, the process spawned is a waiter; the solution is its child.
                target = solution_below(pid) if sandboxed else pid
                try:
                    if target is not None:
                        os.kill(target, STACK_SIGNAL)
                except ProcessLookupError:
                    target = None
                send(control, {"signalled": target})
            elif op == ZygoteOp.WAIT:
                end = time.monotonic() + float(request.get("timeout", 0))
                pid = int(request["pid"])
                while pid not in statuses and time.monotonic() < end:
                    time.sleep(0.002)
                    reap()
                status = statuses.pop(pid, None)
                send(control, {"status": status})


def preload(modules: list[str]) -> None:
    """Import what solutions will need, once, so that every fork starts with it."""
    for module in modules:
        try:
            __import__(module)
        except Exception:
            pass  # the child's own import will report it


BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from grader.sandbox.zygote import main; main()"

if __name__ == "__main__":
    main()
