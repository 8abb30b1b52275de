"""`grade watch` end to end, in a pseudo-terminal as a student runs it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, Terminal, processes_with_marker

BROKEN = "def softmax(x, dim=-1:\n    return x\n"
HANGING = """
def softmax(x, dim=-1, keepdim=False):
    while True:
        pass
log_softmax = logsumexp = softmax
"""


@pytest.fixture
def project(tmp_path: Path, solutions_copy: Path) -> Path:
    (tmp_path / "grade.toml").write_text(f'solutions = "{solutions_copy}"\n')
    (solutions_copy / "foundations" / "softmax.py").write_text((ROOT / "exercises" / "foundations" / "softmax.py").read_text())
    return tmp_path


def save(path: Path, text: str) -> None:
    path.write_text(text)


def test_watch_regrades_each_save_and_quits_leaving_nothing(project: Path, solutions_copy: Path):
    softmax = solutions_copy / "foundations" / "softmax.py"
    term = Terminal([sys.executable, "-c", "from grader.cli import main; main()", "watch", "foundations.softmax",
                     "--timeout", "0.5"], cwd=project)
    try:
        first = term.read_until(r"Save to re-grade")
        assert "foundations.softmax" in first and "not started" in first
        assert "foundations/softmax.py" in first, "it names the file to open"

        term.type("h")
        hint = term.read_until(r"Save to re-grade")
        assert "Hint 1 of" in hint, hint

        save(softmax, BROKEN)
        broken = term.read_until(r"Save to re-grade")
        assert "saved" in broken and "SyntaxError" in broken, broken

        save(softmax, (ROOT / "reference" / "foundations" / "softmax.py").read_text())
        fixed = term.read_until(r"Save to re-grade")
        assert "13/13" in fixed and "passes" in fixed, fixed

        save(softmax, HANGING)
        hanging = term.read_until(r"Save to re-grade", timeout=120)
        assert "timeout" in hanging or "timed out" in hanging, hanging

        # Mid-grade, q stops the hanging solution at once (13 checks of 0.5 s each are left).
        save(softmax, HANGING + "# saved again\n")
        term.read_until(r"saved ")
        started = time.monotonic()
        term.type("q")
        assert term.proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 4, "q waited for the grade to finish"
        assert processes_with_marker(f"grade-zygote:judge={term.proc.pid}") == []
    finally:
        term.close()
