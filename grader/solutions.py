"""The judge's side of isolation: the zygote client, the sandbox plan, the solution processes.

`SolutionPool` owns a run's zygote and one `SolutionHandle` per exercise. A handle starts a
solution process on first use, exchanges frames with it under a per-call deadline, has the
zygote kill the process (and everything it started) on timeout, turns a dead process into
`SolutionCrashed`, and starts a fresh one for the next call after a crash or timeout. An
import failure is kept and reported to every later check without starting again. Values
are encoded and decoded by `grader.remote`, which builds the proxies; this module only
moves frames.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import (
    SolutionCrashed,
    SolutionFailure,
    SolutionImportError,
    SolutionTimeout,
)
from grader.sandbox import protocol as wire
from grader.sandbox.protocol import ZygoteOp

IMPORT_GRACE_S = 20.0
ZYGOTE_START_S = 120.0
CAPTURE_TAIL = 4000
CPU_CALLS = 100  # the CPU-time cap of a solution process: this many calls at their deadline
STACK_DUMP_WAIT_S = 1.0  # after a timeout, how long to wait for the process's stack dump
CAPTURE_DUMP = 64 << 10  # how much of the capture file is read for it

SIGNAL_NOTES = {
    signal.SIGSEGV: "a segmentation fault: memory was read or written out of bounds",
    signal.SIGBUS: "a bus error",
    signal.SIGABRT: "an abort (often a failed assertion inside a C extension)",
    signal.SIGKILL: "SIGKILL (often the system running out of memory)",
    signal.SIGFPE: "a floating-point exception",
    signal.SIGXCPU: "its CPU-time limit",
    signal.SIGILL: "an illegal instruction",
}

# What a solution process's environment may hold: nothing of the judge's but these.
ENV_PASSED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
              "NVIDIA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TRITON_INTERPRET")
ENV_FIXED = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def solution_env() -> dict[str, str]:
    """The allow-listed environment of the zygote and every solution process."""
    from grader.imports import interpret_triton_without_cuda

    interpret_triton_without_cuda()
    env = dict(ENV_FIXED)
    env.update({k: os.environ[k] for k in ENV_PASSED if k in os.environ})
    return env


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


@dataclass
class SandboxPlan:
    """What the sandbox shows a solution: everything else of the machine stays out of sight.

    `solutions` are bound read-only; so are the Python installation and every entry of the
    judge's `sys.path` that does not hold a `hidden` path (the project, the references,
    the plugins, the state file, the judge's home, working directory and temporary directory).
    """

    isolation: str  # "sandbox" or "process"
    solutions: list[Path]
    hidden: list[Path] = field(default_factory=list)
    # Modules the zygote imports once it is ready, while the judge collects its checks,
    # so that no exercise's first call waits for them (each spawn still asks for its own).
    preload: list[str] = field(default_factory=list)

    def binds(self) -> list[str]:
        # The temporary directory holds the sandbox's own root and other runs' files: a
        # script run from there puts it on sys.path, and it must not be bound whole.
        # Hidden paths inside the grader package (a wheel's grader/_curriculum: references and
        # checks) need no care here: the jail shows only the package's sandbox/ subfolder.
        package = Path(__file__).resolve().parent
        hidden = [p.resolve() for p in self.hidden if not _contains(package, p.resolve())]
        hidden += [Path.cwd().resolve(), Path.home().resolve(), Path(tempfile.gettempdir()).resolve()]
        candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}
        out = []
        for entry in sorted(c for c in candidates if c and os.path.isdir(c)):
            path = Path(entry).resolve()
            if not any(_contains(path, h) for h in hidden):
                out.append(str(path))
        return out + [str(p.resolve()) for p in self.solutions]

    def to_json(self, root: str) -> str:
        return json.dumps({
            "isolation": self.isolation,
            "root": root,
            "binds": self.binds(),
            "preload": self.preload,
            "package": str(Path(__file__).resolve().parent),
        })


class Zygote:
    """A warm process with torch and numpy imported, which forks solution processes."""

    def __init__(self, plan: SandboxPlan) -> None:
        self.plan = plan
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        self.isolation = plan.isolation
        self._buffer = b""
        self._root: str | None = None
        self._ready = False

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it: it imports torch while the judge does."""
        if self.proc is not None and self.proc.poll() is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._root = tempfile.mkdtemp(prefix="grade-root-")
        from grader.sandbox.zygote import BOOT

        self._ready = False
        self.proc = subprocess.Popen(
            # The judge's pid in the command line lets anyone see which run a process belongs to.
            [sys.executable, "-c", BOOT, str(Path(__file__).resolve().parent.parent), str(theirs.fileno()),
             self.plan.to_json(self._root), f"grade-zygote:judge={os.getpid()}"],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=solution_env(),
            cwd="/",
        )
        theirs.close()
        self.control = ours

    def wait_ready(self) -> None:
        """Wait for the launched process to say it is ready (or why it is not)."""
        if self._ready:
            return
        reply = self._recv(ZYGOTE_START_S)
        if reply is None or "ready" not in reply:
            why = (reply or {}).get("failed", "it exited before saying it was ready")
            self.close()
            raise RuntimeError(f"the grader's zygote process failed to start: {why}")
        self.isolation = reply.get("isolation", self.plan.isolation)
        self._ready = True

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

    def spawn(self, request: dict[str, Any], wire_fd: int, capture_fd: int) -> int:
        return int(self._request({"op": ZygoteOp.SPAWN, **request}, [wire_fd, capture_fd])["pid"])

    def kill(self, pid: int) -> None:
        try:
            self._request({"op": ZygoteOp.KILL, "pid": pid})
        except RuntimeError:
            pass

    def dump_stack(self, pid: int) -> None:
        try:
            self._request({"op": ZygoteOp.DUMP_STACK, "pid": pid})
        except RuntimeError:
            pass

    def wait(self, pid: int, timeout: float) -> int | None:
        try:
            return self._request({"op": ZygoteOp.WAIT, "pid": pid, "timeout": timeout}, timeout=timeout + 10)["status"]
        except RuntimeError:
            return None

    def close(self) -> None:
        if self.control is not None:
            try:
                self.control.sendall(json.dumps({"op": ZygoteOp.EXIT}).encode() + b"\n")
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
        if self._root is not None:
            try:
                os.rmdir(self._root)
            except OSError:
                pass
            self._root = None


def describe_exit(status: int | None) -> str:
    if status is None:
        return "the solution process died"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        note = SIGNAL_NOTES.get(sig)
        return f"the solution process was killed by {name}" + (f" ({note})" if note else "")
    return f"the solution process exited with status {os.WEXITSTATUS(status)} (did your code call os._exit or exit?)"


_DUMP_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in (?P<name>.+)$')


def student_stack(dump: str, solutions: str, display_root: str) -> str:
    """The student's frames of a faulthandler dump, as a traceback (most recent call last),
    with their source lines. The thread shown is the first one running the student's code."""
    root = Path(solutions).resolve()
    for block in dump.split("most recent call first):")[1:]:
        frames = []
        for line in block.splitlines():  # this thread's frames, then the next one's header
            m = _DUMP_FRAME.match(line)
            # Resolved first: the dump is the student's to forge, and only their files are read.
            if m and Path(m["file"]).resolve().is_relative_to(root):
                frames.append((str(Path(m["file"]).resolve()), int(m["line"]), m["name"]))
        if frames:
            out = []
            for path, lineno, name in reversed(frames[:20]):
                try:
                    shown = os.path.relpath(path, display_root)
                except ValueError:
                    shown = path
                out.append(f'  File "{shown}", line {lineno}, in {name}')
                linecache.checkcache(path)  # the file may have been saved since the last look
                source = linecache.getline(path, lineno).strip()
                if source:
                    out.append(f"    {source}")
            return "\n".join(out)
    return ""


class SolutionProcess:
    """One running solution process: a wire socket, its pid (as the zygote knows it), and
    the file its file descriptors 1 and 2 write to (read for crash reports)."""

    def __init__(self, zygote: Zygote, request: dict[str, Any], scratch: Path):
        self.zygote = zygote
        self.solutions = request["solutions"]
        self.capture = scratch / "output.txt"
        cwd = scratch / "cwd"  # used only without the sandbox, which gives each a tmpfs
        cwd.mkdir()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        capture = os.open(self.capture, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.pid = zygote.spawn({**request, "cwd": str(cwd)}, theirs.fileno(), capture)
        finally:
            theirs.close()
            os.close(capture)
        self.alive = True
        self.display_root = request["display_root"]

    def exchange(self, header: Any, buffers: list[bytes], deadline: wire.Deadline, max_bytes: int) -> tuple[Any, list[bytes]]:
        wire.send_frame(self.sock, header, buffers, deadline)
        return wire.recv_frame(self.sock, deadline, max_bytes)

    def receive(self, deadline: wire.Deadline, max_bytes: int) -> tuple[Any, list[bytes]]:
        return wire.recv_frame(self.sock, deadline, max_bytes)

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

    def stopped_at(self) -> str:
        """Where the student's code is now (the current call ran out of time): the student's
        frames of the stacks the process writes to its capture file when the zygote signals
        it, as a traceback, most recent call last; "" when none came within STACK_DUMP_WAIT_S."""
        try:
            start = os.path.getsize(self.capture)  # what the process wrote before is not the dump
        except OSError:
            return ""
        self.zygote.dump_stack(self.pid)
        text, size, waited = "", -1, 0.0
        while waited < STACK_DUMP_WAIT_S:
            try:
                with open(self.capture, "rb") as f:
                    f.seek(start)
                    text = f.read(CAPTURE_DUMP).decode(errors="replace")
            except OSError:
                return ""
            if "most recent call first" in text and len(text) == size:
                break  # the dump is there and no longer growing
            size = len(text)
            time.sleep(0.02)
            waited += 0.02
        return student_stack(text, self.solutions, self.display_root)

    def kill(self, exited: bool = False) -> int | None:
        """Have the zygote kill the process and all it started; return its exit status.

        `exited`: the process hung up on its own (a crash), so its status is collected
        before the kill; otherwise it is killed at once.
        """
        if not self.alive:
            return None
        self.alive = False
        self.sock.close()
        status = self.zygote.wait(self.pid, 5.0) if exited else None
        self.zygote.kill(self.pid)
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
        inplace: list[str] = (),
        threads: int = 1,
        max_frame_mb: int = wire.DEFAULT_MAX_FRAME >> 20,
    ):
        self.zygote = zygote
        self.timeout = timeout
        self.default_timeout = timeout
        self.memory_mb = memory_mb
        self.max_frame = max_frame_mb << 20
        self.spawn_request = {
            "solutions": str(solutions),
            "display_root": str(display_root),
            "track": track,
            "name": name,
            "memory_mb": memory_mb,
            "cpu_s": int(timeout * CPU_CALLS + IMPORT_GRACE_S),
            "threads": threads,
            "preload": preload,
            "forbidden": list(forbidden),
            "inplace": list(inplace),
            "max_frame": self.max_frame,
            "env": solution_env(),
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
        process = SolutionProcess(self.zygote, self.spawn_request, scratch)
        self.process = process
        deadline = wire.Deadline(self.default_timeout + IMPORT_GRACE_S)
        try:
            header, buffers = process.receive(deadline, self.max_frame)
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
            err = reply["import_error"] if isinstance(reply["import_error"], dict) else {}
            self.import_failure = SolutionImportError(str(err.get("message")), str(err.get("traceback", "")))
            raise self.import_failure
        names = reply["ready"].get("names") if isinstance(reply["ready"], dict) else None
        self.names = {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}
        return process

    def stop(self) -> None:
        """Stop the running process; the next call starts a fresh one."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._scratch_root, ignore_errors=True)

    def take_output(self) -> str:
        text = "".join(self.output)
        self.output.clear()
        return text

    # --- one round trip ---------------------------------------------------------------

    def exchange(self, header: Any, buffers: list[bytes], describe: str) -> tuple[Any, list[bytes], int]:
        """Send one request frame and receive its reply: (header, buffers, generation).

        A timeout, a crash, a malformed or over-large reply stops the process and raises
        the matching `SolutionFailure`; the next call starts a fresh process.
        """
        process = self.ensure_started()
        generation = self.generation
        header = {**header, "deadline_s": self.timeout} if isinstance(header, dict) else header
        deadline = wire.Deadline(self.timeout)
        try:
            reply_header, reply_buffers = process.exchange(header, buffers, deadline, self.max_frame)
        except wire.FrameTimeout:
            where = process.stopped_at()
            process.kill()
            self.process = None
            raise SolutionTimeout(
                f"{describe or 'the call'} did not return within {self.timeout:g} s; the solution process was "
                "stopped. Look for an endless loop, or work that grows much faster than the input."
                + (f"\nYour code was here when it was stopped:\n{where}" if where else "")
            ) from None
        except wire.PeerClosed:
            status = process.kill(exited=True)
            self.process = None
            tail = process.captured_tail()
            raise SolutionCrashed(
                f"{describe_exit(status)} during {describe or 'a call'}." + (f"\n{tail}" if tail else "")
            ) from None
        except wire.FrameTooLarge as e:
            process.kill()
            self.process = None
            raise SolutionFailure(
                f"{describe or 'the call'} sent back {e}, for one reply; the solution process was stopped. "
                f"Return smaller values (an instructor can raise max_frame_mb for this exercise)."
            ) from None
        except wire.WireError as e:
            process.kill()
            self.process = None
            raise SolutionCrashed(f"the solution process sent a malformed reply ({e}); it was stopped.") from None
        return reply_header, reply_buffers, generation


class ModuleRef:
    """Marker sent as the reference to the student's module (id 0)."""


class SolutionPool:
    """A run's solution side: one zygote, and one handle per exercise being graded."""

    def __init__(self, plan: SandboxPlan, threads: int = 1):
        self.plan = plan
        self.threads = threads
        self.zygote: Zygote | None = None
        self.handles: dict[str, SolutionHandle] = {}

    @property
    def isolation(self) -> str:
        return self.zygote.isolation if self.zygote is not None else self.plan.isolation

    def start(self, wait: bool = True) -> None:
        """Start the zygote before the first check, so no check's time includes it; with
        wait=False it imports torch while the judge goes on, until `wait_ready`."""
        if self.zygote is None:
            self.zygote = Zygote(self.plan)
            self.zygote.launch()
        if wait:
            self.zygote.wait_ready()

    def handle(self, exercise: Any, solutions: Path, display_root: Path, timeout: float) -> SolutionHandle:
        handle = self.handles.get(exercise.id)
        if handle is None:
            self.start()
            assert self.zygote is not None
            handle = SolutionHandle(
                self.zygote,
                solutions=solutions,
                track=exercise.track,
                name=exercise.name,
                display_root=display_root,
                timeout=timeout,
                memory_mb=exercise.memory_mb,
                preload=exercise.preload,
                forbidden=exercise.forbidden,
                inplace=exercise.inplace,
                threads=self.threads,
                max_frame_mb=exercise.max_frame_mb,
            )
            self.handles[exercise.id] = handle
        return handle

    def get(self, exercise_id: str) -> SolutionHandle | None:
        return self.handles.get(exercise_id)

    def finish(self, exercise_id: str) -> None:
        handle = self.handles.pop(exercise_id, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for exercise_id in list(self.handles):
            self.finish(exercise_id)
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


def release(pool: SolutionPool | None, shared: Path | None) -> None:
    """End a run's solution side: its processes, its zygote, and the directory its checks
    shared with solutions."""
    if pool is not None:
        pool.close()
    if shared is not None:
        shutil.rmtree(shared, ignore_errors=True)
