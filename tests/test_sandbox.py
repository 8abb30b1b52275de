"""The sandbox's contract with the rest of the grader: its import boundary, the isolation
levels and how they degrade, and what the results file says about them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT, load_results, run_grade, run_leftovers

from grader import probes
from grader.sandbox import probes as bodies

SANDBOX = ROOT / "grader" / "sandbox"
SIMULATE = {"GRADE_SANDBOX_SIMULATE_UNAVAILABLE": "1"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports inside the sandbox package"
            base = node.module or ""
            names += [base] if base != "grader" else [f"grader.{a.name}" for a in node.names]
    return names


def test_the_sandbox_package_imports_nothing_from_the_judge_side():
    files = sorted(SANDBOX.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "protocol.py", "zygote.py", "jail.py", "server.py",
                                       "guards.py", "probes.py"}
    for path in files:
        judge_side = [n for n in _imports(path) if n.split(".")[0] == "grader" and not n.startswith("grader.sandbox")]
        assert judge_side == [], f"{path.name} imports {judge_side} from the judge side"


def test_the_judge_side_does_not_import_in_a_cycle():
    """solutions.py moves frames; remote.py builds proxies on top of it, never the reverse."""
    assert not [n for n in _imports(ROOT / "grader" / "solutions.py") if n.startswith("grader.remote")]


def test_every_probe_body_has_a_dispatcher():
    assert sorted(probes.__all__) == sorted(bodies.PROBES)
    for name in bodies.PROBES:
        assert getattr(probes, name).__wrapped__ is bodies.PROBES[name]


def _graded(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", "reference", "foundations.softmax", "--report", f"json:{out}", "-q", *args, env=env)
    return proc, out


def test_the_isolation_used_is_in_the_results(tmp_path: Path):
    proc, out = _graded(tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = load_results(out)
    assert data["environment"]["isolation"] == "sandbox"
    assert data["score"] == data["max_score"]


def test_strict_refuses_to_grade_without_the_sandbox(tmp_path: Path):
    proc, out = _graded(tmp_path, "--isolation", "strict", env=SIMULATE)
    assert proc.returncode == 2
    assert "--isolation strict needs the sandbox" in proc.stderr and "--isolation auto" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("why", [["--hidden"], ["CI"]])
def test_strict_is_the_default_in_ci_and_with_hidden(why, tmp_path: Path):
    env = dict(SIMULATE, **({"CI": "true"} if why == ["CI"] else {}))
    proc, _ = _graded(tmp_path, *[w for w in why if w.startswith("-")], env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--isolation strict needs the sandbox" in proc.stderr


def test_without_namespaces_grading_degrades_to_process_isolation_and_says_so(tmp_path: Path, solutions_copy: Path):
    """One line on stderr, the level in the results, and a hang still costs only its check."""
    (solutions_copy / "foundations" / "softmax.py").write_text(
        "def softmax(x, dim=-1, keepdim=False):\n    while True:\n        pass\nlog_softmax = logsumexp = softmax\n"
    )
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.softmax", "foundations.cross_entropy",
                     "--report", f"json:{out}", "--timeout", "2", "-q", "--isolation", "auto",
                     env=dict(SIMULATE, CI=""))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Sandbox unavailable"), proc.stderr
    data = load_results(out)
    assert data["environment"]["isolation"] == "process"
    scores = {e["id"]: e for t in data["tracks"] for e in t["exercises"]}
    assert {c["outcome"] for c in scores["foundations.softmax"]["checks"]} == {"timeout"}
    assert scores["foundations.cross_entropy"]["score"] == scores["foundations.cross_entropy"]["max_score"]
    assert run_leftovers(proc) == []


def test_each_call_gets_cpu_time_tied_to_its_deadline():
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from grader.sandbox.server import limit_cpu\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))\n"
        "limit_cpu(3.0)\n"
        "print(*resource.getrlimit(resource.RLIMIT_CPU))\n"
    )
    soft, hard = map(int, subprocess.check_output([sys.executable, "-c", code], text=True).split())
    assert hard == 1000 and 5 <= soft <= 10  # CPU used so far (about a second), the deadline, 2 s more


CPU_REPORTER = """
import resource, torch
def softmax(x, dim=-1, keepdim=False):
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    raise RuntimeError(f"cpu {used.ru_utime + used.ru_stime:.2f} soft {soft} hard {hard} threads {torch.get_num_threads()}")
log_softmax = logsumexp = softmax
"""


def test_every_call_into_a_solution_gets_cpu_time_for_its_deadline_only(tmp_path: Path, solutions_copy: Path):
    (solutions_copy / "foundations" / "softmax.py").write_text(CPU_REPORTER)
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.softmax", "--timeout", "3",
                     "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    checks = load_results(out)["tracks"][0]["exercises"][0]["checks"]
    for check in checks:
        numbers = check["message"].split("cpu ", 1)[1].split()
        used, soft, hard, threads = float(numbers[0]), int(numbers[2]), int(numbers[4]), int(numbers[6])
        assert soft < hard, "only the spawn-time limit for the whole process was set"
        assert used + 3 <= soft <= used + 3 * threads + 3, check["message"]


def test_the_zygote_imports_torch_only_inside_the_jail():
    """A user namespace cannot be entered by a process with threads, which torch may start."""
    import subprocess
    import sys

    code = "import sys, grader.sandbox.zygote, grader.sandbox.jail; print('torch' in sys.modules, 'numpy' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).split() == ["False", "False"]


def test_the_temporary_directory_and_its_parents_are_never_bound_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # `python /tmp/script.py` puts /tmp on sys.path; binding it would show other runs'
    # files, and the sandbox's own root lives there.
    import tempfile

    from grader.solutions import SandboxPlan

    tmp = str(Path(tempfile.gettempdir()).resolve())
    inside = tmp_path / "site"
    inside.mkdir()
    monkeypatch.setattr("sys.path", [tmp, "/", str(inside)])
    binds = SandboxPlan("sandbox", [ROOT / "reference"]).binds()
    assert tmp not in binds and "/" not in binds
    assert str(inside.resolve()) in binds
