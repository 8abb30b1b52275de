"""Helpers for the engine's own tests: run the CLI, read results, find stray processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_grade(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the `grade` CLI in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from grader.cli import main; main()", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


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
