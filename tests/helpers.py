"""Helpers for the engine's own tests: run the CLI, read results, find stray processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Graded(subprocess.CompletedProcess):
    """A finished `grade` run; `pid` was its process id (the zygote's command line names it)."""

    pid: int


def run_grade(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600) -> Graded:
    """Run the `grade` CLI in a fresh interpreter, as a user would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from grader.cli import main; main()", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
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
