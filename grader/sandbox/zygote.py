"""The zygote: a warm process that has imported torch and numpy and forks solution processes.

Started by the judge as `python -m grader.sandbox.zygote FD`, where FD is its end of a control
socket. It never initialises CUDA, so each forked child may. Requests are JSON messages,
some carrying file descriptors (the child's end of the wire):

    {"op": "spawn", ...}  -> {"pid": N}     fork a solution process
    {"op": "wait", "pid": N, "timeout": s} -> {"status": int | None}
    {"op": "exit"}

The zygote dies with the judge (PR_SET_PDEATHSIG) and each child dies with the zygote.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
CONTROL_MAX = 1 << 16
FILE_SIZE_LIMIT = 256 << 20


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the wire's EOF still ends the child
        pass


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def virtual_memory_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def set_limits(request: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    cpu = int(request["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    # The address-space cap counts what torch has already mapped, so it is added on top.
    try:
        cap = virtual_memory_bytes() + int(request["memory_mb"]) * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):
        pass


def become_solution(control: socket.socket, wire_fd: int, request: dict[str, Any]) -> None:
    """In the forked child: isolate, limit, then serve the judge until it hangs up."""
    os.setsid()
    die_with_parent()
    control.close()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-large writes fail, not kill
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    capture = os.open(request["capture"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(capture, 1)
    os.dup2(capture, 2)
    faulthandler.enable(file=sys.__stderr__, all_threads=False)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = [p for p in sys.path if p and os.path.isdir(p)]
    import torch

    torch.set_num_threads(int(request.get("threads", 1)))
    set_limits(request)
    from grader.sandbox import server

    server.run(socket.socket(fileno=wire_fd), request)


def main() -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the judge's to handle
    control = socket.socket(fileno=int(sys.argv[1]))
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import grader.sandbox.server  # noqa: F401

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

    send(control, {"ready": os.getpid()})
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
            if op == "exit":
                return
            if op == "spawn":
                for module in request.get("preload", []):
                    try:
                        __import__(module)
                    except ImportError:
                        pass  # the child's own import will report it
                wire_fd = fds.pop(0)
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        become_solution(control, wire_fd, request)
                    except BaseException:
                        code = 70
                    finally:
                        os._exit(code)
                os.close(wire_fd)
                send(control, {"pid": pid})
            elif op == "wait":
                end = time.monotonic() + float(request.get("timeout", 0))
                pid = int(request["pid"])
                while pid not in statuses and time.monotonic() < end:
                    time.sleep(0.005)
                    reap()
                status = statuses.pop(pid, None)
                send(control, {"status": status})


if __name__ == "__main__":
    main()
