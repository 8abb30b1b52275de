"""Grades a roster: a directory with one folder per student, each laid out like a
solutions directory (<track>/<name>.py), into a gradebook (`grader.gradebook`).

Every submission is graded by the same warm judge and zygote (`runner.WarmJudge`): its
files are copied into one staging directory, the only solutions directory the zygote
ever sees, so imports are paid once per run. A hanging, crashing or memory-hungry
submission costs its own checks, as in any run; should the judge itself fail on one, it is
reported, left out of the gradebook (a re-run tries it again) and a fresh judge goes on.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader import __version__
from grader.errors import GraderError


@dataclass
class Submission:
    name: str
    directory: Path

    def files(self) -> list[Path]:
        """The submission's Python files, relative to its folder; links are not followed
        (one could point at any file of the machine that grades)."""
        out = []
        for path in sorted(self.directory.rglob("*.py")):
            rel = path.relative_to(self.directory)
            if path.is_symlink() or "__pycache__" in rel.parts or any(
                    (self.directory / Path(*rel.parts[:i])).is_symlink() for i in range(1, len(rel.parts))):
                continue
            if path.is_file():
                out.append(rel)
        return out

    def content_hash(self) -> str:
        h = hashlib.sha256()
        for rel in self.files():
            h.update(rel.as_posix().encode() + b"\0")
            h.update((self.directory / rel).read_bytes())
            h.update(b"\0")
        return h.hexdigest()


def find_submissions(root: Path) -> list[Submission]:
    """One submission per folder of `root`. A folder holding `exercises/` (a clone of the
    student's repository, as GitHub Classroom exports it) is graded from there."""
    if not root.is_dir():
        raise GraderError(f"the submissions directory {root} does not exist; give a directory with one folder per "
                          "student, or a .zip of one.")
    out = []
    for p in sorted(root.iterdir(), key=lambda p: p.name):
        if p.is_dir() and not p.is_symlink() and not p.name.startswith((".", "__")):
            inner = p / "exercises"
            out.append(Submission(p.name, inner if inner.is_dir() and not inner.is_symlink() else p))
    return out


def _is_student(folder: Path) -> bool:
    """A student's folder holds exercises/, or track folders with .py files in them."""
    return (folder / "exercises").is_dir() or any(
        child.is_dir() and any(child.glob("*.py")) for child in folder.iterdir())


MAX_ZIP_BYTES = 1 << 30  # what a roster's .py files may unpack to, all together


def unpack_zip(archive: Path, into: Path) -> Path:
    """Unpack the .py files of a roster's zip (a GitHub Classroom or Gradescope export:
    a folder per student, perhaps all inside one top folder) into `into`, and return the
    folder that holds the students' folders. Nothing is written outside `into`; links are
    skipped; more than MAX_ZIP_BYTES unpacked is refused."""
    import stat
    import zipfile

    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as e:
        raise GraderError(f"{archive} cannot be read as a zip file: {e}; give a directory or a .zip of one.") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and m.filename.endswith(".py")
                   and not stat.S_ISLNK(m.external_attr >> 16)]
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise GraderError(f"{archive} unpacks to more than {MAX_ZIP_BYTES >> 20} MiB of Python files; "
                              "unpack it yourself and grade the directory.")
        for m in members:
            parts = Path(m.filename.replace("\\", "/")).parts
            if not parts or m.filename.startswith("/") or any(p in ("..", "") or ":" in p for p in parts):
                continue
            target = into.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
    root = into
    entries = [p for p in root.iterdir() if not p.name.startswith(("__", "."))]
    while len(entries) == 1 and entries[0].is_dir() and not _is_student(entries[0]):
        root = entries[0]  # one top folder around the students' folders
        entries = [p for p in root.iterdir() if not p.name.startswith(("__", "."))]
    return root


def parse_shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise GraderError(f"--shard {text} is not K/N with 1 <= K <= N (for example --shard 2/4).")
    return int(k), int(n)


def shard_of(name: str, shards: int) -> int:
    """The 1-based shard a submission belongs to: a stable hash of its name, so a
    student stays in their shard when others join or leave the roster."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % shards + 1


def check_hash(catalog: Any, selection: list[tuple[Any, Any]], options: Any) -> str:
    """What a grade depends on besides the submission: the grader's version, the grading
    options, the selected checks, and every check file and toml of the tracks involved."""
    h = hashlib.sha256()
    h.update(f"{__version__}\0{options.salt}\0{options.hidden}\0{options.timeout}\0".encode())
    for exercise, checks in selection:
        h.update(f"{exercise.id}:{sorted(checks) if checks is not None else '*'}\0".encode())
    tracks = {e.track for e, _ in selection}
    for track in catalog.tracks:
        if track.id not in tracks:
            continue
        for path in sorted([*track.directory.rglob("*.py"), *track.directory.rglob("*.toml")]):
            if "__pycache__" in path.parts:
                continue
            h.update(str(path.relative_to(track.directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _stage(submission: Submission, staging: Path) -> None:
    """Replace the staging directory's contents with the submission's files. The
    directory itself stays: the zygote's sandbox shows that very directory."""
    for child in staging.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for rel in submission.files():
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(submission.directory / rel, target)
    staging.chmod(0o755)
    for path in staging.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


@dataclass
class RosterSummary:
    graded: int = 0
    skipped: int = 0
    failed: int = 0  # the judge failed: left out of the gradebook


def grade_roster(
    catalog: Any,
    selection: list[tuple[Any, Any]],
    options: Any,
    submissions: list[Submission],
    book: Any,
    targets: list[str],
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[Submission, Any], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> RosterSummary:
    """Grade each submission whose files or checks changed since the gradebook last
    graded it, writing its rows as soon as it is graded (with `options.jobs` > 1, by
    that many worker processes)."""
    digest = check_hash(catalog, selection, options)
    known = book.graded()
    todo: list[tuple[Submission, str]] = []
    summary = RosterSummary()
    for submission in submissions:
        content = submission.content_hash()
        before = known.get(submission.name)
        if before is not None and (before.content_hash, before.check_hash) == (content, digest):
            summary.skipped += 1
        else:
            todo.append((submission, content))
    if on_start:
        on_start(len(todo))
    if not todo:
        return summary
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run_id = book.start_run(__version__, started, targets, digest)
    if options.jobs > 1 and len(todo) > 1:
        _grade_in_workers(selection, options, todo, book, run_id, summary, on_done)
    else:
        _grade_here(catalog, selection, options, todo, book, run_id, summary, on_done, on_problem)
    return summary


def _grade_here(catalog: Any, selection: list[tuple[Any, Any]], options: Any, todo: list[tuple[Submission, str]],
                book: Any, run_id: int, summary: RosterSummary,
                on_done: Callable[[Submission, Any], None] | None,
                on_problem: Callable[[str], None] | None) -> None:
    from dataclasses import replace

    from grader.runner import WarmJudge, run

    staging = Path(tempfile.mkdtemp(prefix="grade-roster-"))
    staging.chmod(0o755)
    opts = replace(options, solutions=staging, display_root=staging, jobs=1)
    exercises = [e for e, _ in selection]
    warm = WarmJudge(exercises=exercises)
    try:
        for submission, content in todo:
            try:
                _stage(submission, staging)
                result = run(catalog, selection, opts, warm=warm)
            except Exception as e:  # the judge's failure, not the student's: try it again next run
                summary.failed += 1
                if on_problem:
                    on_problem(f"{submission.name}: grading failed ({type(e).__name__}: {e}); "
                               "it is left out of the gradebook and a re-run grades it again.")
                warm.close()
                warm = WarmJudge(exercises=exercises)
                continue
            graded_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            book.record(submission.name, content, run_id, graded_at, result)
            summary.graded += 1
            if on_done:
                on_done(submission, result)
    finally:
        warm.close()
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class _Score:
    """What a worker's submission reports to the progress line: its score."""

    score: float
    max_score: float


def _grade_in_workers(selection: list[tuple[Any, Any]], options: Any, todo: list[tuple[Submission, str]],
                      book: Any, run_id: int, summary: RosterSummary,
                      on_done: Callable[[Submission, Any], None] | None) -> None:
    """-j N: N worker processes, each a warm judge of its own over every Nth submission,
    writing to the gradebook itself; progress is read back from the gradebook."""
    import json
    import os
    import subprocess
    import time

    tmp = Path(tempfile.mkdtemp(prefix="grade-roster-jobs-"))
    workers = []
    try:
        for i in range(min(options.jobs, len(todo))):
            spec = {
                "targets": [e.id if c is None else [e.id, sorted(c)] for e, c in selection],
                "options": options.to_json(),
                "cwd": str(Path.cwd()),
                "gradebook": str(book.path),
                "run_id": run_id,
                "submissions": [[s.name, str(s.directory), content] for s, content in todo[i::options.jobs]],
            }
            path = tmp / f"job{i}.json"
            path.write_text(json.dumps(spec))
            workers.append(subprocess.Popen([sys.executable, "-m", "grader.roster", str(path)], env=os.environ.copy()))
        by_name = {s.name: s for s, _ in todo}
        reported: set[str] = set()

        def poll() -> None:
            for name, score, max_score in book.db.execute(
                    "SELECT name, score, max_score FROM submissions WHERE run_id = ?", (run_id,)):
                if name in by_name and name not in reported:
                    reported.add(name)
                    summary.graded += 1
                    if on_done:
                        on_done(by_name[name], _Score(score, max_score))

        while any(w.poll() is None for w in workers):
            poll()
            time.sleep(0.5)
        poll()
        summary.failed += len(by_name) - len(reported)
    finally:
        for w in workers:
            if w.poll() is None:  # interrupted: no worker outlives the run
                w.kill()
                w.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _worker(spec_path: str) -> None:
    """A -j worker: grade the submissions named in the spec into the gradebook."""
    import json
    import os

    from grader.config import load_config
    from grader.gradebook import Gradebook
    from grader.plugins import GradePlugins
    from grader.runner import RunOptions

    spec = json.loads(Path(spec_path).read_text())
    os.chdir(spec["cwd"])
    options = RunOptions.from_json(spec["options"])
    catalog = GradePlugins(load_config(), blocked=options.blocked).catalog()
    selection = [(catalog.exercise(t), None) if isinstance(t, str) else (catalog.exercise(t[0]), frozenset(t[1]))
                 for t in spec["targets"]]
    todo = [(Submission(name, Path(directory)), content) for name, directory, content in spec["submissions"]]
    book = Gradebook(Path(spec["gradebook"]))
    try:
        _grade_here(catalog, selection, options, todo, book, spec["run_id"], RosterSummary(), None,
                    lambda text: print(text, file=sys.stderr))
    finally:
        book.close()


if __name__ == "__main__":
    _worker(sys.argv[1])
