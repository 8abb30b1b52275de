"""`grade roster`: a class graded into one gradebook by one warm judge; a hostile
submission costs only its own checks; a re-run grades only what changed; shards merged
equal one run (of two workers); the exports hold a row per student with the right totals."""

from __future__ import annotations

import csv
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import ROOT, run_grade
from test_hostile_solutions import HOSTILE

TARGETS = ["foundations.softmax", "foundations.cross_entropy"]
SOFTMAX, CROSS_ENTROPY = 13.0, 12.0  # the targets' points, as `grade` gives them


def _submission(root: Path, name: str, softmax: str | None = "reference", cross_entropy: str | None = "reference") -> None:
    """A student's folder: each file from reference/ or exercises/ (the stub), or text."""
    folder = root / name
    folder.mkdir(parents=True)
    for exercise, source in (("softmax", softmax), ("cross_entropy", cross_entropy)):
        if source is None:
            continue
        target = folder / "foundations" / f"{exercise}.py"
        target.parent.mkdir(exist_ok=True)
        if source in ("reference", "exercises"):
            shutil.copyfile(ROOT / source / "foundations" / f"{exercise}.py", target)
        else:
            target.write_text(source)


def _roster(args: list[str], book: Path, *extra: str):
    return run_grade("roster", *args, *TARGETS, "--gradebook", str(book), "--timeout", "3", *extra)


def _scores(book: Path) -> dict[str, tuple[float, float]]:
    with sqlite3.connect(book) as db:
        return {n: (s, m) for n, s, m in db.execute("SELECT name, score, max_score FROM submissions")}


def _rows(book: Path) -> tuple[list, list]:
    """Every submission's and check's row, without when or in which run it was graded."""
    with sqlite3.connect(book) as db:
        subs = sorted(db.execute("SELECT name, content_hash, score, max_score FROM submissions"))
        checks = sorted(db.execute("SELECT * FROM checks"))
    return subs, checks


@pytest.fixture(scope="module")
def hostile_book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("roster") / "submissions"
    _submission(root, "full")
    _submission(root, "stub", "exercises", "exercises")
    _submission(root, "hangs", HOSTILE["hangs"])
    _submission(root, "crashes", HOSTILE["exits_at_import"])
    _submission(root, "hungry", HOSTILE["allocates_without_bound"])
    (root / "empty").mkdir()
    book = root.parent / "book.sqlite"
    return book, _roster([str(root)], book)


def test_every_submission_is_graded_and_a_hostile_one_costs_only_its_own_checks(hostile_book):
    book, proc = hostile_book
    assert proc.returncode == 0, proc.stderr
    assert "6 graded" in proc.stderr
    full = SOFTMAX + CROSS_ENTROPY
    assert _scores(book) == {
        "full": (full, full), "stub": (0.0, full), "empty": (0.0, full),
        "hangs": (CROSS_ENTROPY, full), "crashes": (CROSS_ENTROPY, full), "hungry": (CROSS_ENTROPY, full),
    }
    with sqlite3.connect(book) as db:
        outcomes = {o for (o,) in db.execute(
            "SELECT outcome FROM checks WHERE submission = 'hangs' AND exercise = 'foundations.softmax'")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert outcomes == {"timeout"}
    assert version == 1


def test_export_csv_has_a_column_per_exercise_and_the_total(hostile_book, tmp_path: Path):
    book, _ = hostile_book
    out, lms = tmp_path / "grades.csv", tmp_path / "lms.csv"
    proc = run_grade("gradebook", "export", str(book), "--csv", str(out), "--lms", str(lms))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["submission", *TARGETS, "total"]
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert sorted(by_name) == ["crashes", "empty", "full", "hangs", "hungry", "stub"]
    assert by_name["full"] == ["13", "12", "25"]
    assert by_name["hangs"] == ["0", "12", "12"]
    lms_rows = list(csv.reader(lms.open()))
    assert lms_rows[0] == ["Student", "ID", "SIS User ID", "Section", "llm-grader"]
    assert lms_rows[1][0] == "Points Possible"
    assert {r[0]: r[4] for r in lms_rows[2:]}["hangs"] == "48.00"


@pytest.fixture
def class_of_six(tmp_path: Path) -> Path:
    root = tmp_path / "submissions"
    for i in range(2):
        _submission(root, f"full{i}")
        _submission(root, f"stub{i}", "exercises", "exercises")
        _submission(root, f"half{i}", "reference", "exercises")
    return root


def test_a_rerun_grades_only_new_or_changed_submissions(class_of_six: Path, tmp_path: Path):
    book = tmp_path / "book.sqlite"
    first = tmp_path / "first"  # what a run killed after two submissions had written
    first.mkdir()
    for name in ("full0", "half0"):
        shutil.copytree(class_of_six / name, first / name)
    assert _roster([str(first)], book).returncode == 0
    proc = _roster([str(class_of_six)], book)
    assert proc.returncode == 0, proc.stderr
    assert "4 graded, 2 unchanged" in proc.stderr
    assert _scores(book)["half0"] == (SOFTMAX, SOFTMAX + CROSS_ENTROPY)
    shutil.copyfile(ROOT / "reference" / "foundations" / "cross_entropy.py",
                    class_of_six / "half1" / "foundations" / "cross_entropy.py")
    proc = _roster([str(class_of_six)], book)
    assert "1 graded, 5 unchanged" in proc.stderr
    assert _scores(book)["half1"] == (SOFTMAX + CROSS_ENTROPY,) * 2


def test_three_shards_merged_equal_one_run_of_two_workers(class_of_six: Path, tmp_path: Path):
    whole = tmp_path / "whole.sqlite"
    assert _roster([str(class_of_six)], whole, "-j", "2").returncode == 0
    shards = [tmp_path / f"shard{k}.sqlite" for k in (1, 2, 3)]
    for k, book in enumerate(shards, 1):
        proc = _roster([str(class_of_six)], book, "--shard", f"{k}/3")
        assert proc.returncode == 0, proc.stderr
    names = [set(_scores(b)) for b in shards]
    assert sum(len(n) for n in names) == 6 and len(set.union(*names)) == 6  # each exactly once
    merged = tmp_path / "merged.sqlite"
    proc = run_grade("gradebook", "merge", str(merged), *map(str, shards))
    assert proc.returncode == 0, proc.stderr
    assert _rows(merged) == _rows(whole)


def test_merging_two_different_gradings_of_one_student_is_an_error(tmp_path: Path):
    books = []
    for source in ("reference", "exercises"):
        root = tmp_path / source
        _submission(root, "alice", source, source)
        books.append(tmp_path / f"{source}.sqlite")
        assert _roster([str(root)], books[-1]).returncode == 0
    proc = run_grade("gradebook", "merge", str(tmp_path / "merged.sqlite"), *map(str, books))
    assert proc.returncode == 2
    assert "'alice'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_class_of_twelve(tmp_path: Path):
    root = tmp_path / "submissions"
    for i in range(3):
        _submission(root, f"full{i}")
        _submission(root, f"stub{i}", "exercises", "exercises")
        _submission(root, f"crashes{i}", HOSTILE["exits_at_import"])
        _submission(root, f"hungry{i}", HOSTILE["allocates_without_bound"])
    book = tmp_path / "book.sqlite"
    proc = _roster([str(root)], book)
    assert proc.returncode == 0, proc.stderr
    scores = _scores(book)
    assert len(scores) == 12
    assert {scores[f"full{i}"][0] for i in range(3)} == {SOFTMAX + CROSS_ENTROPY}
    assert {scores[f"hungry{i}"][0] for i in range(3)} == {CROSS_ENTROPY}


def test_a_classroom_zip_is_graded_and_cannot_write_outside_its_folder(tmp_path: Path):
    """GitHub Classroom's export: one top folder, a clone of each student's repository
    (their solutions in exercises/) inside it. A member named ../ or a link is skipped."""
    import stat
    import zipfile

    clones = tmp_path / "clones"
    _submission(clones, "full")
    _submission(clones, "stub", "exercises", "exercises")
    archive = tmp_path / "classroom.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(clones.rglob("*.py")):
            rel = path.relative_to(clones)
            zf.write(path, f"assignment-1-submissions/{rel.parts[0]}-repo/exercises/{Path(*rel.parts[1:])}")
        zf.writestr("assignment-1-submissions/escapes/../../../escaped.py", "x = 1\n")
        link = zipfile.ZipInfo("assignment-1-submissions/linked/foundations/softmax.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    book = tmp_path / "book.sqlite"
    proc = _roster([str(archive)], book)
    assert proc.returncode == 0, proc.stderr
    full = SOFTMAX + CROSS_ENTROPY
    assert _scores(book) == {"full-repo": (full, full), "stub-repo": (0.0, full)}
    assert not list(tmp_path.parent.rglob("escaped.py"))


def test_a_bad_shard_or_gradebook_is_a_sentence(tmp_path: Path):
    root = tmp_path / "submissions"
    (root / "empty").mkdir(parents=True)
    proc = _roster([str(root)], tmp_path / "book.sqlite", "--shard", "4/3")
    assert proc.returncode == 2 and "--shard 4/3 is not K/N" in proc.stderr, proc.stderr
    not_a_book = tmp_path / "notes.txt"
    not_a_book.write_text("these are my notes, not a gradebook\n" * 100)
    proc = _roster([str(root)], not_a_book)
    assert proc.returncode == 2 and "cannot be opened as a gradebook" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not_a_book.read_text().startswith("these are my notes")


def test_one_submission_leaves_nothing_behind_for_the_next(tmp_path: Path):
    # The warm judge and zygote are shared; the solution processes are not. A student whose
    # module plants a value in torch at import must not hand it to the student graded next.
    reference = (ROOT / "reference" / "foundations" / "softmax.py").read_text()
    root = tmp_path / "submissions"
    _submission(root, "a_plants", reference + "\n\nimport torch\n\ntorch.graded_before = True\n")
    _submission(root, "b_reads", "import torch\n\n\ndef softmax(x, dim=-1):\n"
                "    if getattr(torch, 'graded_before', False):\n        return torch.softmax(x, dim)\n"
                "    raise NotImplementedError\n\n\ndef log_softmax(x, dim=-1):\n    raise NotImplementedError\n\n\n"
                "def logsumexp(x, dim=-1):\n    raise NotImplementedError\n")
    book = tmp_path / "book.sqlite"
    proc = _roster([str(root)], book)
    assert proc.returncode == 0, proc.stderr
    scores = _scores(book)
    assert scores["a_plants"][0] == SOFTMAX + CROSS_ENTROPY
    assert scores["b_reads"][0] == CROSS_ENTROPY, scores


@pytest.mark.slow
def test_a_class_of_twelve_killed_midway_resumes_and_shards_merge_to_the_same_gradebook(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "submissions"
    for i in range(3):
        _submission(root, f"full{i}")
    for i in range(2):
        _submission(root, f"stub{i}", "exercises", "exercises")
    for i in range(3):
        _submission(root, f"half{i}", "reference", "exercises")
    _submission(root, "hangs", HOSTILE["hangs"])
    _submission(root, "crashes", HOSTILE["exits_at_import"])
    _submission(root, "hungry", HOSTILE["allocates_without_bound"])
    (root / "empty").mkdir()
    assert len(list(root.iterdir())) == 12
    full = SOFTMAX + CROSS_ENTROPY
    expected = {**{f"full{i}": full for i in range(3)}, **{f"stub{i}": 0.0 for i in range(2)},
                **{f"half{i}": SOFTMAX for i in range(3)}, "hangs": CROSS_ENTROPY, "crashes": CROSS_ENTROPY,
                "hungry": CROSS_ENTROPY, "empty": 0.0}

    whole = tmp_path / "whole.sqlite"
    assert _roster([str(root)], whole).returncode == 0
    assert {n: s for n, (s, _) in _scores(whole).items()} == expected

    # Killed midway: the grader and everything it started, once three submissions are written.
    book = tmp_path / "book.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", "from grader.cli import main; main()", "roster", str(root),
                             *TARGETS, "--gradebook", str(book), "--timeout", "3"],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    written, deadline = 0, time.monotonic() + 300
    while written < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if book.exists():
            try:
                written = len(_scores(book))
            except Exception:  # the schema is being written
                continue
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_scores(book))
    assert 3 <= done < 12, done
    rerun = _roster([str(root)], book)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{12 - done} graded, {done} unchanged" in rerun.stderr, rerun.stderr

    def same(book: Path) -> tuple[list, list]:
        # where a timeout found the endless loop (line 3 or 4 of it) is the one thing that may differ
        subs, checks = _rows(book)
        return subs, [row[:-1] + (row[-1].split("\nYour code was here")[0],) for row in checks]

    assert same(book) == same(whole)

    shards = [tmp_path / f"shard{k}.sqlite" for k in (1, 2, 3)]
    for k, shard in enumerate(shards, 1):
        assert _roster([str(root)], shard, "--shard", f"{k}/3").returncode == 0
    merged = tmp_path / "merged.sqlite"
    assert run_grade("gradebook", "merge", str(merged), *map(str, shards)).returncode == 0
    assert same(merged) == same(whole)
