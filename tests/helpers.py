"""Helpers for the engine's own tests: run the CLI (also in a pseudo-terminal), read
results, find stray processes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Graded(subprocess.CompletedProcess):
    """A finished `grade` run; `pid` was its process id (the zygote's command line names it)."""

    pid: int


def run_grade(*args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None, timeout: float = 600) -> Graded:
    """Run the `grade` CLI in a fresh interpreter, as a user would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from grader.cli import main; main()", *args],
        cwd=cwd,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},  # None: unset
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise
    done = Graded(proc.args, proc.returncode, stdout, stderr)
    done.pid = proc.pid
    return done


def processes_with_marker(marker: str) -> list[int]:
    """Processes whose command line contains `marker`, read from outside any sandbox."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def run_leftovers(graded: Graded) -> list[int]:
    """Processes of a finished run still alive: its zygote and solution processes carry
    `grade-zygote:judge=<pid>` in their command line."""
    return processes_with_marker(f"grade-zygote:judge={graded.pid}")


def load_results(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["schema"] == "llm-grader/results/1"
    return data


def exercise_scores(data: dict) -> dict[str, tuple[float, float, str]]:
    return {
        e["id"]: (e["score"], e["max_score"], e["status"])
        for t in data["tracks"]
        for e in t["exercises"]
    }


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A process on the slave side of a pty; what it prints is read from the master."""

    def __init__(self, args: list[str], cwd: Path):
        self.master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "100", "TERM": "xterm", "PYTHONPATH": str(ROOT)}
        env.pop("CI", None)
        self.proc = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.seen = ""
        self.pending = ""  # read past the last match; searched by the next call

    def read_until(self, pattern: str, timeout: float = 60) -> str:
        """Everything new up to and including `pattern` (a regex); fails after `timeout`."""
        start = len(self.seen)
        self.seen += self.pending
        self.pending = ""
        end = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(self.seen, start)
            if match:
                self.seen, rest = self.seen[:match.end()], self.seen[match.end():]
                self.pending = rest
                return self.seen[start:]
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; the output since:\n{self.seen[start:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data and self.proc.poll() is not None:
                    raise AssertionError(f"grade watch exited ({self.proc.returncode}) before {pattern!r}:\n"
                                         f"{self.seen[start:]}")
                self.seen += ANSI.sub("", data.decode(errors="replace").replace("\r", ""))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        os.close(self.master)


def one_exercise_track(root: Path, track: str, name: str, *, toml: str, reference: str, stub: str, checks: str,
                       solution: str, order: int = 50) -> Path:
    """A project in `root` whose own plugin (`plugin_<track>.py`) registers a track of one
    exercise, laid out like a bundled one under `root/<track>/`, with the solution to grade in
    `root/solutions/<track>/<name>.py`. Returns `root`."""
    folder = root / track
    (folder / "reference").mkdir(parents=True)
    (folder / "exercises").mkdir()
    (folder / "track.toml").write_text(f'id = "{track}"\ntitle = "{track}"\norder = {order}\nexercises = ["{name}"]\n')
    (folder / f"{name}.toml").write_text(toml)
    (folder / "reference" / f"{name}.py").write_text(reference)
    (folder / "exercises" / f"{name}.py").write_text(stub)
    (folder / f"check_{name}.py").write_text(checks)
    (root / f"plugin_{track}.py").write_text(
        "from pathlib import Path\n\nfrom grader import hookimpl\nfrom grader.catalog import load_track\n\n\n"
        "@hookimpl\ndef grade_register_tracks(register, config):\n"
        f"    register(load_track(Path(__file__).parent / {track!r} / 'track.toml'))\n")
    (root / "pyproject.toml").write_text(f'[tool.grade]\nsolutions = "solutions"\nplugins = ["plugin_{track}"]\n')
    (root / "solutions" / track).mkdir(parents=True)
    (root / "solutions" / track / f"{name}.py").write_text(solution)
    return root
