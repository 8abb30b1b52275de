"""`grade release`: the student edition, its recorded outputs, and the instructor's round trip.

The proof that a release grades as the full course does is `grader.release.compare_editions`,
which `grade release` runs on every recorded solution (the reference, the stub and each known
mistake); the tests here check that it notices a difference, that the edition holds no
reference source, mutant table or hidden check, and that a student's local verdicts equal the
instructor's CI's.
"""

from __future__ import annotations

import ast
import json
import lzma
import shutil
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, run_grade

from grader import release
from grader.config import load_config
from grader.plugins import GradePlugins

# Exercises that between them use the reference fixture (pretokenize), known mistakes named
# through `expect` (softmax) and a check's own use of the mistakes' outputs (init_and_clip).
SMALL = ["foundations.softmax", "foundations.init_and_clip", "tokenization.pretokenize"]


def full_catalog():
    return GradePlugins(load_config(ROOT)).catalog()


# --- fingerprints ---------------------------------------------------------------------------


def _module(name: str, source: str) -> types.ModuleType:
    import sys

    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module
    exec(compile(textwrap.dedent(source), module.__file__, "exec"), module.__dict__)
    return module


CHECKS = """
    import torch

    {above}
    def test_one(x):
        a = lambda s: s.softmax(x, dim=0)
        b = lambda s: s.softmax(x, dim=1)
        c = lambda s: s.log_softmax(x, dim=0)
        return a, b, c
"""


def test_fingerprint_tells_calls_apart_by_code_and_data():
    m = _module("grade_checks.t.check_fp", textwrap.dedent(CHECKS).format(above=""))
    x = torch.arange(6.0).view(2, 3)
    a, b, c = m.test_one(x)
    a2, _, _ = m.test_one(x.clone())
    a3, _, _ = m.test_one(x + 1)
    assert release.fingerprint(a) == release.fingerprint(a2)  # the same call on equal data
    assert len({release.fingerprint(f) for f in (a, b, c)}) == 3  # another constant, another function
    assert release.fingerprint(a) != release.fingerprint(a3)  # other data
    assert release.fingerprint(a) != release.fingerprint(m.test_one(x.double())[0])  # another dtype


def test_fingerprint_survives_stripping_hidden_checks_above():
    hidden = "@pytest.mark.hidden\ndef test_hidden(expect):\n    return 1\n\n\n"
    source = "import pytest\n" + textwrap.dedent(CHECKS).format(above=hidden)
    full = _module("grade_checks.t.check_strip", source)
    stripped_source, removed = release.strip_hidden(source)
    assert removed == 1 and "test_hidden" not in stripped_source
    # the released module is imported from another folder: a suffix names it (pytest_plugin.CheckModule)
    released = _module("grade_checks.t.check_strip_0123abcd", stripped_source)
    x = torch.ones(3)
    assert [release.fingerprint(f) for f in full.test_one(x)] == [release.fingerprint(f) for f in released.test_one(x)]


def test_fingerprint_reads_no_unknown_object():
    class Proxy:  # stands for a solution proxy: any attribute read would be a request
        def __getattr__(self, name):
            raise AssertionError(f"read {name}")

    p = Proxy()
    f = lambda s: s.f(p)  # noqa: E731
    assert release.fingerprint(f) == release.fingerprint(f)


def test_fingerprint_names_the_shared_folder_and_the_check_modules_class_alike(monkeypatch):
    """What differs between the instructor's run and a student's is left out: the folder a
    check hands files through, the suffix of a check module imported from the edition, and
    what a `OncePerModule` kept of the solution's results."""
    from grader import recording
    from grader.checks import OncePerModule

    def key(folder: str, module: str, kept: object) -> str:
        monkeypatch.setattr(recording, "scratch_folders", {folder: "<shared_dir>"})
        cls = type("Training", (), {"__module__": module})
        run = OncePerModule(lambda m: m.load_tokens(f"{folder}/tokens.bin"))
        run._kept[1] = (None, kept)
        return release.fingerprint(lambda m: run(m), Path(folder) / "a.bin", cls())

    first = key("/tmp/pytest-of-root/pytest-7/test_x0", "grade_checks.t.check_x", "the reference's output")
    assert key("/tmp/grade-shared-k2/t.e.abc", "grade_checks.t.check_x_0123abcd", "a student's output") == first
    assert key("/tmp/grade-shared-k2/t.e.abc", "grade_checks.t.check_y", "a student's output") != first
    monkeypatch.setattr(recording, "scratch_folders", {})
    assert release.fingerprint("/tmp/a/x.bin") != release.fingerprint("/tmp/b/x.bin")  # elsewhere, paths count


def test_values_round_trip_through_a_weights_only_load(tmp_path):
    value = {"t": torch.arange(4.0).requires_grad_(), "a": np.arange(3, dtype=np.int16), "s": np.float32(1.5),
             b"k": (1, 2.5, None, True, "x", 1 + 2j), (1, 2): {3, 4}, "f": frozenset([b"a"]), "z": torch.Size([2]),
             "o": np.array(["a", "bc"]), "d": torch.float16}
    recording = release.Recording("t.e")
    recording.put("mistakes", ("check", "key", "m"), (True, value))
    recording.save(tmp_path / "r.pt.xz")
    back = release.Recording.load(tmp_path / "r.pt.xz").get("mistakes", ("check", "key", "m"))
    assert back is not None and back[0]
    got = back[1]
    assert torch.equal(got["t"], value["t"]) and got["t"].requires_grad
    assert got["a"].dtype == np.int16 and got["a"].tolist() == [0, 1, 2]
    assert type(got["s"]) is np.float32 and got[b"k"] == value[b"k"] and got[(1, 2)] == {3, 4}
    assert got["f"] == frozenset([b"a"]) and got["z"] == torch.Size([2]) and got["o"].tolist() == ["a", "bc"]
    assert got["d"] is torch.float16
    got["t"].data.add_(1)  # each replay is a fresh copy
    assert torch.equal(release.Recording.load(tmp_path / "r.pt.xz").get("mistakes", ("check", "key", "m"))[1]["t"],
                       value["t"])


def test_a_key_with_two_outputs_is_not_replayed():
    recording = release.Recording("t.e")
    recording.put("mistakes", ("c", "k", "m"), (True, torch.zeros(2)))
    recording.put("mistakes", ("c", "k", "m"), (True, torch.zeros(2)))
    assert recording.get("mistakes", ("c", "k", "m"))[0]
    recording.put("mistakes", ("c", "k", "m"), (True, torch.ones(2)))  # the global random state, say
    assert recording.get("mistakes", ("c", "k", "m")) is None
    recording.put("mistakes", ("c", "k2", "m"), (True, object()))
    assert recording.get("mistakes", ("c", "k2", "m")) is None and recording.unrecordable == {"builtins.object"}
    assert release.ReplayedMistake("m", recording).outcome(lambda s: s) == (False, None)  # never recorded


def test_the_replayed_reference_answers_recorded_calls_and_names_its_parameters():
    import inspect

    from grader import recording as calls

    module = types.SimpleNamespace(__name__="ref", scale=lambda x, factor=2: x * factor)
    record = release.Recording("t.e", signatures=release.signatures(module))
    live = release.RecordingReference(module, record)
    with calls.recording(check="c"):
        assert torch.equal(live.scale(torch.ones(2), factor=3), torch.full((2,), 3.0))
    replayed = release.ReplayedReference(record, "t.e")
    with calls.recording(check="c"):
        assert torch.equal(replayed.scale(torch.ones(2), factor=3), torch.full((2,), 3.0))
        assert list(inspect.signature(replayed.scale).parameters) == ["x", "factor"]
        with pytest.raises(release.ReleaseGap, match="not recorded"):
            replayed.scale(torch.ones(3), factor=3)  # other inputs
    with calls.recording(check="another check"), pytest.raises(release.ReleaseGap):
        replayed.scale(torch.ones(2), factor=3)  # keys are scoped by check


def test_strip_hidden_classes_and_whole_modules():
    source = textwrap.dedent("""
        import pytest

        class TestThings:
            @pytest.mark.hidden
            def test_a(self):
                pass

            def test_b(self):
                pass

        @pytest.mark.hidden
        class TestHidden:
            def test_c(self):
                pass

            def test_d(self):
                pass

        @pytest.mark.points(2)
        @pytest.mark.hidden
        def test_e():
            pass
    """)
    stripped, removed = release.strip_hidden(source)
    assert removed == 4
    assert "test_b" in stripped and not any(f"test_{n}" in stripped for n in "acde")
    compile(stripped, "<stripped>", "exec")
    assert release.strip_hidden("import pytest\npytestmark = [pytest.mark.hidden]\ndef test_x():\n    pass\n") == (None, 1)


# --- the release ----------------------------------------------------------------------------


def _grade_json(out: Path, *args: str, cwd: Path, env: dict | None = None) -> dict:
    report = cwd / f"results-{len(list(cwd.glob('results-*.json')))}.json"
    done = run_grade(*args, "--report", f"json:{report}", cwd=cwd, env=env)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return json.loads(report.read_text())


def _public(data: dict) -> dict:
    return {(e["id"], c["name"]): (c["outcome"], c["points"], c["max_points"], c["message"], c["mistake"])
            for t in data["tracks"] for e in t["exercises"] for c in e["checks"] if not c["hidden"]}


def _split_checks(path: Path) -> tuple[list[str], str]:
    """The names of the checks in `path` marked `pytest.mark.hidden` (one by one, by class, or
    all by a module-level `pytestmark`), and the file's text without them: read here, not by
    the release's own stripper, so that a mark the stripper misses still fails the search."""
    source = path.read_text()
    tree = ast.parse(source)

    def marked(node: ast.AST) -> bool:
        return any("mark.hidden" in ast.unparse(d) for d in getattr(node, "decorator_list", []))

    every = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                and "mark.hidden" in ast.unparse(n.value) for n in tree.body)
    names, spans = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and (every or marked(node)):
            names.append(node.name.removeprefix("test_"))
            spans.append(node)
        elif isinstance(node, ast.ClassDef):
            hidden = [m for m in node.body if isinstance(m, ast.FunctionDef) and m.name.startswith("test_")
                      and (every or marked(node) or marked(m))]
            names += [m.name.removeprefix("test_") for m in hidden]
            spans += [node] if every or marked(node) else hidden
    lines = source.splitlines(keepends=True)
    for node in sorted(spans, key=lambda n: n.lineno, reverse=True):
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        del lines[first - 1 : node.end_lineno]
    return names, "".join(lines)


def _no_solutions_in(out: Path, catalog, exercise_ids: list[str]) -> None:
    """A search of the edition finds no reference source, no mutant table and no hidden check."""
    texts = {}
    for path in out.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            data = path.read_bytes()
            texts[path] = (lzma.decompress(data) if path.suffix == ".xz" else data).decode("utf-8", "replace")
    assert texts and not (out / "reference").exists()
    everything = "\n\0\n".join(texts.values())
    # lines the engine itself holds (an import, a common signature) say nothing of a solution
    generic = "".join(p.read_text() for folder in ("grader", "docs", "templates") for p in (ROOT / folder).rglob("*")
                      if p.is_file() and p.suffix in (".py", ".md", ".j2", ".toml"))
    # what the course shows anyone: every stub, every check file less its hidden checks, and every
    # hint. A public check may hold a judge-side helper (bpe_train's own special-token split) and a
    # hint may quote a line.
    public = generic + "".join(
        catalog.track(e.track).stubs.joinpath(f"{e.name}.py").read_text()
        + "".join(_split_checks(Path(c))[1] for c in e.checks) + "\n".join(e.hints)
        for e in catalog.exercises)
    for exercise_id in exercise_ids:
        exercise = catalog.exercise(exercise_id)
        own = [line.strip() for line in exercise.reference.read_text().splitlines()
               if len(line.strip()) >= 25 and line.strip() not in public]
        assert len(own) >= 3, exercise_id  # the search has something to find
        secret = [(line, "reference source") for line in own] + [
            (piece.strip(), f"mutant {m.name}'s source") for m in exercise.mutants for edit in m.edits
            for piece in edit if len(piece.strip()) >= 20 and piece.strip() not in public]
        for piece, what in secret:
            if piece in everything:  # one search of the whole edition; then name the file
                holders = [str(path) for path, text in texts.items() if piece in text]
                raise AssertionError(f"{holders} hold {what} of {exercise_id}: {piece!r}")
        hidden = [n for c in exercise.checks for n in _split_checks(Path(c))[0]]
        assert hidden, exercise_id
        for name in hidden:
            assert f"def test_{name}(" not in everything, f"the edition holds hidden check {name} of {exercise_id}"
    assert not any("replace = " in t or "mark.hidden\n" in t for p, t in texts.items() if p.suffix in (".toml", ".py")
                   and "plugins" in p.parts)


@pytest.mark.slow
def test_release_grades_as_the_full_course_and_holds_no_solutions(tmp_path):
    catalog = full_catalog()
    out = tmp_path / "edition"
    work = tmp_path / "work"
    outcomes = release.release(catalog, [catalog.exercise(i) for i in SMALL], out, seed=0, jobs=1, start=ROOT,
                               workdir=work)
    assert [o.problems for o in outcomes] == [[]] * len(SMALL)  # every recorded solution graded alike
    assert all(o.recorded.results["reference"].score == o.recorded.results["reference"].max_score for o in outcomes)
    named = {o.exercise: [label for label, r in o.recorded.results.items() if any(c.mistake for c in r.checks)]
             for o in outcomes}
    assert all(named.values()), named  # the comparison included named mistakes
    _no_solutions_in(out, catalog, SMALL)
    # ... and the search finds what it looks for: a reference, a mutant's edit, a hidden check
    pre = catalog.exercise("tokenization.pretokenize")
    planted = [(out / "docs" / "notes.py", pre.reference.read_text()),
               (out / "plugins" / "foundations" / "notes.toml", next(m.edits[0][1] for m in pre.mutants
                                                                     if len(m.edits[0][1]) > 40)),
               (out / "plugins" / "tokenization" / "check_pretokenize.py", pre.checks[0].read_text())]
    for path, text in planted:
        before = path.read_text() if path.exists() else None
        path.write_text(text)
        with pytest.raises(AssertionError):
            _no_solutions_in(out, catalog, SMALL)
        path.unlink() if before is None else path.write_text(before)

    # The comparison notices a damaged recording: drop the mistakes' answers for softmax.
    released = release.released_catalog(out)
    softmax = next(o for o in outcomes if o.exercise == "foundations.softmax")
    path = released.exercise("foundations.softmax").recorded
    damaged = release.Recording.load(path)
    damaged.mistakes = {}
    damaged.save(path)
    problems = release.compare_editions(release.released_catalog(out), "foundations.softmax", softmax.recorded, work)
    assert problems and all("mistake:" in p for p in problems), problems


@pytest.mark.slow
def test_student_edition_grades_with_its_own_grade_and_round_trips_to_the_instructors_ci(tmp_path):
    """The instructor releases; a student works in the edition and grades locally (isolated,
    as students do); the instructor's CI grades the same commit with the full course and
    --hidden: every public verdict is the same, and the hidden checks run only there."""
    out = tmp_path / "edition"
    done = run_grade("release", str(out), *SMALL, "-j", "2", cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every recorded solution grades there as in the full course" in done.stdout
    catalog = full_catalog()
    student = tmp_path / "student"
    shutil.copytree(out, student)
    env = {"PYTHONPATH": str(student), "CI": None}
    # In an untouched edition every exercise is a stub: zero, nothing run as hidden.
    fresh = _grade_json(student, cwd=student, env=env)
    assert fresh["score"] == 0 and fresh["max_score"] > 0
    assert {e["status"] for t in fresh["tracks"] for e in t["exercises"]} == {"not_started"}
    assert all(e["hidden_not_run"] >= 1 for t in fresh["tracks"] for e in t["exercises"])
    # The student's commit: softmax solved, pretokenize with a known mistake, init_and_clip untouched.
    softmax = catalog.exercise("foundations.softmax")
    (student / "exercises/foundations/softmax.py").write_text(softmax.reference.read_text())
    pre = catalog.exercise("tokenization.pretokenize")
    mistake = pre.mutants[0]
    (student / "exercises/tokenization/pretokenize.py").write_text(mistake.apply(pre.reference.read_text()))
    local = _grade_json(student, cwd=student, env=env)
    ci = _grade_json(student, *SMALL, "--solutions", "exercises", "--hidden", cwd=student,
                     # the full course's grader, installed, not the edition's copy in the student's folder
                     # (PYTHONSAFEPATH: the folder is not put first on sys.path, as for the `grade` script)
                     env={"PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1", "CI": "1",
                          "GRADE_SECRET_SALT": "instructor-secret"})
    assert _public(local) == _public(ci)
    assert any(v[4] == mistake.name for v in _public(local).values())  # the mistake is named locally too
    by_id = {e["id"]: e for t in local["tracks"] for e in t["exercises"]}
    assert by_id["foundations.softmax"]["score"] == by_id["foundations.softmax"]["max_score"]
    hidden_ci = [c for t in ci["tracks"] for e in t["exercises"] for c in e["checks"] if c["hidden"]]
    assert hidden_ci and not any(c["hidden"] for t in local["tracks"] for e in t["exercises"] for c in e["checks"])
    # The edition builds into a wheel as the full course does, without references.
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(out)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("llm_grader-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "grader/_curriculum/plugins/foundations/recorded/softmax.pt.xz" in names
    assert "grader/_curriculum/exercises/foundations/softmax.py" in names
    assert not any("/reference/" in n for n in names)
    # What the edition refuses, with a sentence.
    for args, says in ((["--hidden"], "no hidden checks"), (["--seed", "5"], "seed 0"), (["check"], "student edition"),
                       (["release", str(tmp_path / "again")], "released edition")):
        refused = run_grade(*args, cwd=student, env=env)
        assert refused.returncode == 2 and says in refused.stderr, (args, refused.stderr)


@pytest.mark.slow
def test_the_whole_curriculum_releases_and_grades_alike(tmp_path):
    """`grade release` on every exercise: each recorded solution (reference, stub, every known
    mistake) grades in the edition exactly as in the full course (compare_editions), and the
    edition holds no reference source, mutant table or hidden check."""
    out = tmp_path / "edition"
    catalog = full_catalog()
    targets = [e.id for e in catalog.exercises]
    done = run_grade("release", str(out), *targets, "-j", "2", cwd=ROOT, timeout=3600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    _no_solutions_in(out, catalog, targets)
    released = release.released_catalog(out)
    assert [e.id for e in released.exercises] == targets
    assert all(e.recorded.is_file() for e in released.exercises)
