"""The judge's side of isolation: the zygote client and one solution process per exercise.

`SolutionHandle` is what checks talk to (through `grader.remote` proxies): it starts a
solution process on first use, forwards requests with a per-call deadline, kills the
whole process tree on timeout, turns a dead process into `SolutionCrashed`, and starts a
fresh process for the next call after a crash or timeout. An import failure is kept and
reported to every later check without starting again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grader.sandbox import protocol as wire
from grader.errors import (
    SolutionCrashed,
    SolutionError,
    SolutionFailure,
    SolutionImportError,
    SolutionTimeout,
)

IMPORT_GRACE_S = 20.0
ZYGOTE_START_S = 120.0
CAPTURE_TAIL = 4000
CPU_LIMIT_S = 3600

SIGNAL_NOTES = {
    signal.SIGSEGV: "a segmentation fault: memory was read or written out of bounds",
    signal.SIGBUS: "a bus error",
    signal.SIGABRT: "an abort (often a failed assertion inside a C extension)",
    signal.SIGKILL: "SIGKILL (often the system running out of memory)",
    signal.SIGFPE: "a floating-point exception",
    signal.SIGXCPU: "its CPU-time limit",
    signal.SIGILL: "an illegal instruction",
}


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, session) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def kill_tree(root: int) -> None:
    """SIGKILL `root` and every process in its session, its process group or below it."""
    for _ in range(5):
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _proc_stat(int(entry))
                if st:
                    stats[int(entry)] = st
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


class Zygote:
    """A warm process with torch and numpy imported, which forks solution processes."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        self._buffer = b""

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grader.sandbox.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.control = ours
        reply = self._recv(ZYGOTE_START_S)
        if reply is None or "ready" not in reply:
            self.close()
            raise RuntimeError("the grader's zygote process failed to start")

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        assert self.control is not None
        self.control.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self.control.recv(1 << 16)
                if not chunk:
                    return None
                self._buffer += chunk
        except (TimeoutError, OSError):
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _request(self, message: dict[str, Any], fds: list[int] = (), timeout: float = 30.0) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self.start()
        assert self.control is not None
        socket.send_fds(self.control, [json.dumps(message).encode() + b"\n"], list(fds))
        reply = self._recv(timeout)
        if reply is None:
            self.close()
            raise RuntimeError("the grader's zygote process stopped answering")
        return reply

    def spawn(self, request: dict[str, Any], wire_fd: int) -> int:
        return int(self._request({"op": "spawn", **request}, [wire_fd])["pid"])

    def wait(self, pid: int, timeout: float) -> int | None:
        try:
            return self._request({"op": "wait", "pid": pid, "timeout": timeout}, timeout=timeout + 10)["status"]
        except RuntimeError:
            return None

    def close(self) -> None:
        if self.control is not None:
            try:
                self.control.sendall(b'{"op": "exit"}\n')
            except OSError:
                pass
            self.control.close()
            self.control = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def describe_exit(status: int | None) -> str:
    if status is None:
        return "the solution process died"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        note = SIGNAL_NOTES.get(sig)
        return f"the solution process was killed by {name}" + (f" ({note})" if note else "")
    return f"the solution process exited with status {os.WEXITSTATUS(status)} (did your code call os._exit or exit?)"


class SolutionProcess:
    """One running solution process: a wire socket, a pid, a scratch directory."""

    def __init__(self, zygote: Zygote, request: dict[str, Any], scratch: Path):
        self.zygote = zygote
        self.scratch = scratch
        self.solutions = request["solutions"]
        self.capture = scratch / "output.txt"
        cwd = scratch / "cwd"
        cwd.mkdir()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        request = {**request, "capture": str(self.capture), "cwd": str(cwd)}
        try:
            self.pid = zygote.spawn(request, theirs.fileno())
        finally:
            theirs.close()
        self.alive = True

    def exchange(self, header: Any, buffers: list[bytes], deadline: wire.Deadline) -> tuple[Any, list[bytes]]:
        wire.send_frame(self.sock, header, buffers, deadline)
        return wire.recv_frame(self.sock, deadline)

    def receive(self, deadline: wire.Deadline) -> tuple[Any, list[bytes]]:
        return wire.recv_frame(self.sock, deadline)

    def captured_tail(self) -> str:
        """The end of what the process wrote to its file descriptors 1 and 2 (crash reports).

        Frames outside the student's files are dropped from Python's fatal-error report.
        """
        try:
            with open(self.capture, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - CAPTURE_TAIL))
                text = f.read().decode(errors="replace").strip()
        except OSError:
            return ""
        lines = []
        for line in text.splitlines():
            if line.strip().startswith("File \"") and self.solutions not in line:
                continue
            if line.startswith("Extension modules:"):
                continue
            lines.append(line)
        return "\n".join(lines)

    def kill(self, exited: bool = False) -> int | None:
        """Kill the process tree and return the solution process's exit status.

        `exited`: the process hung up on its own (a crash), so its status is collected
        before the kill; otherwise it is killed at once.
        """
        if not self.alive:
            return None
        self.alive = False
        self.sock.close()
        status = self.zygote.wait(self.pid, 5.0) if exited else None
        kill_tree(self.pid)
        if status is None:
            status = self.zygote.wait(self.pid, 5.0)
        return status


class SolutionHandle:
    """Everything the judge needs to call one exercise's solution, across restarts."""

    def __init__(
        self,
        zygote: Zygote,
        *,
        solutions: Path,
        track: str,
        name: str,
        display_root: Path,
        timeout: float,
        memory_mb: int,
        preload: list[str],
        forbidden: list[str] = (),
        threads: int = 1,
    ):
        self.zygote = zygote
        self.timeout = timeout
        self.default_timeout = timeout
        self.memory_mb = memory_mb
        self.spawn_request = {
            "solutions": str(solutions),
            "display_root": str(display_root),
            "track": track,
            "name": name,
            "memory_mb": memory_mb,
            "cpu_s": CPU_LIMIT_S,
            "threads": threads,
            "preload": preload,
            "forbidden": list(forbidden),
            "env": {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONHASHSEED": "0",
            },
        }
        self.process: SolutionProcess | None = None
        self.generation = 0
        self.names: dict[str, str] = {}
        self.import_failure: SolutionFailure | None = None
        self.output: list[str] = []
        self._scratch_root = Path(tempfile.mkdtemp(prefix="grade-solution-"))

    # --- lifecycle --------------------------------------------------------------------

    def ensure_started(self) -> SolutionProcess:
        if self.import_failure is not None:
            raise self.import_failure
        if self.process is not None and self.process.alive:
            return self.process
        self.generation += 1
        scratch = self._scratch_root / str(self.generation)
        scratch.mkdir()
        self.spawn_request["env"]["HOME"] = str(scratch / "cwd")
        self.spawn_request["env"]["TMPDIR"] = str(scratch / "cwd")
        process = SolutionProcess(self.zygote, self.spawn_request, scratch)
        self.process = process
        deadline = wire.Deadline(self.default_timeout + IMPORT_GRACE_S)
        try:
            header, buffers = process.receive(deadline)
            reply = wire.decode(header, buffers, lambda ref: None)
        except wire.FrameTimeout:
            process.kill()
            self.import_failure = SolutionImportError(
                f"importing the module did not finish within {self.default_timeout + IMPORT_GRACE_S:.0f} s; "
                "does it run a long computation or an endless loop at import time?"
            )
            raise self.import_failure from None
        except (wire.PeerClosed, wire.WireError):
            status = process.kill(exited=True)
            tail = process.captured_tail()
            self.import_failure = SolutionImportError(
                f"{describe_exit(status)} while importing your module." + (f"\n{tail}" if tail else "")
            )
            raise self.import_failure from None
        if isinstance(reply, dict) and isinstance(reply.get("output"), str):
            self.output.append(reply["output"])
        if not isinstance(reply, dict) or ("ready" not in reply and "import_error" not in reply):
            process.kill()
            self.import_failure = SolutionImportError("the solution process sent an unexpected first message")
            raise self.import_failure
        if "import_error" in reply:
            process.kill()
            err = reply["import_error"]
            self.import_failure = SolutionImportError(str(err.get("message")), str(err.get("traceback", "")))
            raise self.import_failure
        self.names = dict(reply["ready"]["names"])
        return process

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process = None
        shutil.rmtree(self._scratch_root, ignore_errors=True)

    def take_output(self) -> str:
        text = "".join(self.output)
        self.output.clear()
        return text

    # --- requests ---------------------------------------------------------------------

    def request(self, message: dict[str, Any], describe: str = "") -> Any:
        from grader.remote import RemoteObject

        process = self.ensure_started()
        generation = self.generation

        def as_ref(obj: Any) -> dict[str, Any]:
            if isinstance(obj, RemoteObject):
                if obj._grade_handle is not self or obj._grade_generation != generation:
                    raise SolutionFailure(
                        "an object from an earlier solution process was used after that process "
                        "was restarted (it crashed or timed out)"
                    )
                return {"$ref": obj._grade_id}
            if isinstance(obj, ModuleRef):
                return {"$ref": 0}
            raise TypeError(f"cannot send a {type(obj).__name__} to the solution process; only data crosses")

        header, buffers = wire.encode(message, as_ref)
        deadline = wire.Deadline(self.timeout)
        try:
            reply_header, reply_buffers = process.exchange(header, buffers, deadline)
            reply = wire.decode(
                reply_header, reply_buffers, lambda ref: RemoteObject(self, generation, ref.id, ref.type, ref.callable)
            )
        except wire.FrameTimeout:
            process.kill()
            self.process = None
            raise SolutionTimeout(
                f"{describe or 'the call'} did not return within {self.timeout:g} s; the solution process was "
                "stopped. Look for an endless loop, or work that grows much faster than the input."
            ) from None
        except wire.PeerClosed:
            status = process.kill(exited=True)
            self.process = None
            tail = process.captured_tail()
            raise SolutionCrashed(
                f"{describe_exit(status)} during {describe or 'a call'}." + (f"\n{tail}" if tail else "")
            ) from None
        except wire.WireError as e:
            process.kill()
            self.process = None
            raise SolutionCrashed(f"the solution process sent a malformed reply ({e}); it was stopped.") from None
        if not isinstance(reply, dict):
            raise SolutionCrashed("the solution process sent a malformed reply; it was stopped.")
        output = reply.get("output")
        if isinstance(output, str) and output:
            self.output.append(output)
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            message = str(err.get("message", ""))
            exc_type = str(err.get("type", "Exception"))
            if exc_type == "MemoryError" or "can't allocate memory" in message:
                message += f" (the memory limit for this exercise is {self.memory_mb} MiB)"
            raise SolutionError(exc_type, message, str(err.get("traceback", "")), describe)
        return reply.get("ok")


class ModuleRef:
    """Marker sent as the reference to the student's module (id 0)."""
