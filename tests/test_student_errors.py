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


def student_file(tmp_path: Path, source: str) -> Path:
    """The student's file sol/t/ex.py under `tmp_path`, holding `source`."""
    student = tmp_path / "sol" / "t" / "ex.py"
    student.parent.mkdir(parents=True, exist_ok=True)
    student.write_text(source)
    return student


def test_a_syntax_error_shows_the_line_with_a_caret_under_the_column(tmp_path: Path):
    student = student_file(tmp_path, "def f():\n\tx = foo bar\n")
    with pytest.raises(SyntaxError) as info:
        load(student)
    lines = server_for(tmp_path / "sol").import_error(info.value)["message"].splitlines()
    assert lines[0] == "sol/t/ex.py: SyntaxError at line 2: invalid syntax"
    assert lines[1:] == ["    \tx = foo bar", "    \t        ^^^"]  # under 'bar'; the tab kept, so it lines up


def test_a_traceback_marks_the_expression_that_raised_unless_it_is_the_whole_line(tmp_path: Path):
    student = student_file(tmp_path, "def f():\n    return 1 + not_defined\n\ndef g():\n    raise ValueError('no')\n\nf()\n")
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


def test_a_stack_dump_shows_only_the_students_files_whatever_it_names(tmp_path: Path):
    """The dump comes from the student's process: a path that leads out of their directory
    (by '..' or a link) is not read, so a forged one cannot show the reference."""
    from grader.solutions import student_stack

    solutions = tmp_path / "sol"
    (solutions / "t").mkdir(parents=True)
    (solutions / "t" / "ex.py").write_text("def spin():\n    while True:\n        pass\n")
    (tmp_path / "reference.py").write_text("SECRET = 42\n")
    (solutions / "t" / "link.py").symlink_to(tmp_path / "reference.py")
    dump = ("Timeout!\nThread 0x00007f (most recent call first):\n"
            f'  File "{solutions}/../reference.py", line 1 in leak\n'
            f'  File "{solutions}/t/link.py", line 1 in leak\n'
            f'  File "{solutions}/t/ex.py", line 2 in spin\n'
            '  File "/usr/lib/python3/threading.py", line 3 in run\n')
    assert student_stack(dump, str(solutions), str(tmp_path)) == '  File "sol/t/ex.py", line 2, in spin\n    while True:'
