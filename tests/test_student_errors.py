"""How the solution server reports the student's errors: the file, the line and a caret."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from grader.sandbox.server import SolutionServer


def server_for(solutions: Path) -> SolutionServer:
    request = {"solutions": str(solutions), "display_root": str(solutions.parent), "track": "t", "name": "ex"}
    return SolutionServer(None, request)


def load(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"student_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)


def test_a_syntax_error_shows_the_line_with_a_caret_under_the_column(tmp_path: Path):
    student = tmp_path / "sol" / "t" / "ex.py"
    student.parent.mkdir(parents=True)
    student.write_text("def f():\n\tx = foo bar\n")
    with pytest.raises(SyntaxError) as info:
        load(student)
    lines = server_for(tmp_path / "sol").import_error(info.value)["message"].splitlines()
    assert lines[0] == "sol/t/ex.py: SyntaxError at line 2: invalid syntax"
    assert lines[1:] == ["    \tx = foo bar", "    \t        ^^^"]  # under 'bar'; the tab kept, so it lines up


def test_a_traceback_marks_the_expression_that_raised_unless_it_is_the_whole_line(tmp_path: Path):
    student = tmp_path / "sol" / "t" / "ex.py"
    student.parent.mkdir(parents=True)
    student.write_text("def f():\n    return 1 + not_defined\n\ndef g():\n    raise ValueError('no')\n\nf()\n")
    with pytest.raises(NameError) as info:
        load(student)
    lines = server_for(tmp_path / "sol").student_traceback(info.value).splitlines()
    assert lines[-3:] == ['  File "sol/t/ex.py", line 2, in f', "    return 1 + not_defined",
                          "               ^^^^^^^^^^^"]
    student.write_text("def g():\n    raise ValueError('no')\n\ng()\n")
    with pytest.raises(ValueError) as info:
        load(student)
    lines = server_for(tmp_path / "sol").student_traceback(info.value).splitlines()
    assert lines[-2:] == ['  File "sol/t/ex.py", line 2, in g', "    raise ValueError('no')"]
