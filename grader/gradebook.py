"""The gradebook: a roster's results in one SQLite file, written a submission at a time.

Tables (schema version in `PRAGMA user_version`):

    runs(id, grader_version, started, targets, check_hash)
    submissions(name, content_hash, score, max_score, graded_at, run_id)
    checks(submission, exercise, check_name, outcome, points, max_points, hidden, mistake, message)

`check_hash` covers the check files, the track tomls, the grader version and the grading
options, so a submission is graded again when either it or the checks change. Rows of a
submission are replaced in one transaction: a run killed midway leaves whole submissions.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import GraderError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    grader_version TEXT NOT NULL,
    started TEXT NOT NULL,
    targets TEXT NOT NULL,
    check_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    name TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    graded_at TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES runs(id)
);
CREATE TABLE IF NOT EXISTS checks (
    submission TEXT NOT NULL REFERENCES submissions(name) ON DELETE CASCADE,
    exercise TEXT NOT NULL,
    check_name TEXT NOT NULL,
    outcome TEXT NOT NULL,
    points REAL NOT NULL,
    max_points REAL NOT NULL,
    hidden INTEGER NOT NULL,
    mistake TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checks_by_submission ON checks(submission);
"""


@dataclass
class Graded:
    """What the gradebook holds of one submission."""

    name: str
    content_hash: str
    check_hash: str


class Gradebook:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=60)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        except (OSError, sqlite3.DatabaseError) as e:
            raise GraderError(f"{path} cannot be opened as a gradebook: {e}; give --gradebook a new file "
                              "or one that grade roster wrote.") from None
        if version not in (0, SCHEMA_VERSION) or (version == 0 and tables):
            raise GraderError(f"{path} is not a gradebook of schema {SCHEMA_VERSION} (it has version {version}); "
                              "give a new file, or grade with the llm-grader that wrote it.")
        self.db.execute("PRAGMA foreign_keys = ON")
        with self.db:
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def start_run(self, grader_version: str, started: str, targets: list[str], check_hash: str) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (grader_version, started, targets, check_hash) VALUES (?, ?, ?, ?)",
                                  (grader_version, started, " ".join(targets), check_hash))
        return int(cur.lastrowid or 0)

    def graded(self) -> dict[str, Graded]:
        rows = self.db.execute("SELECT s.name, s.content_hash, r.check_hash FROM submissions s "
                               "JOIN runs r ON r.id = s.run_id")
        return {name: Graded(name, content, check) for name, content, check in rows}

    def record(self, name: str, content_hash: str, run_id: int, graded_at: str, result: Any) -> None:
        """Replace `name`'s rows with `result` (a RunResult), in one transaction."""
        rows = [(name, e.id, c.name, c.outcome, c.points, c.max_points, int(c.hidden), c.mistake, c.message)
                for e in result.exercises for c in e.checks]
        with self.db:
            self.db.execute("DELETE FROM checks WHERE submission = ?", (name,))
            self.db.execute("DELETE FROM submissions WHERE name = ?", (name,))
            self.db.execute("INSERT INTO submissions VALUES (?, ?, ?, ?, ?, ?)",
                            (name, content_hash, result.score, result.max_score, graded_at, run_id))
            self.db.executemany("INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def submissions(self) -> list[tuple[str, float, float]]:
        return list(self.db.execute("SELECT name, score, max_score FROM submissions ORDER BY name"))

    def exercise_points(self) -> tuple[list[str], dict[str, dict[str, float]]]:
        """Exercise ids in the order they were first graded (course order), and per
        submission the points of each exercise (skipped checks count for nothing)."""
        order = [e for (e,) in self.db.execute("SELECT exercise FROM checks GROUP BY exercise ORDER BY min(rowid)")]
        points: dict[str, dict[str, float]] = {}
        for name, exercise, total in self.db.execute(
                "SELECT submission, exercise, sum(points) FROM checks WHERE outcome != 'skipped' "
                "GROUP BY submission, exercise"):
            points.setdefault(name, {})[exercise] = total
        return order, points

    def merge_from(self, other: Gradebook) -> int:
        """Copy `other`'s submissions here; one held by both with different hashes is an
        error (the same hashes: the copy here stays). Returns how many were copied."""
        mine = self.graded()
        runs = {row[0]: row[1:] for row in other.db.execute(
            "SELECT id, grader_version, started, targets, check_hash FROM runs")}
        new_run: dict[int, int] = {}
        copied = 0
        with self.db:
            for name, content, score, max_score, graded_at, run_id in other.db.execute(
                    "SELECT name, content_hash, score, max_score, graded_at, run_id FROM submissions ORDER BY name"):
                check_hash = runs[run_id][3]
                if name in mine:
                    if (mine[name].content_hash, mine[name].check_hash) != (content, check_hash):
                        raise GraderError(
                            f"{other.path} and the gradebooks merged before it both hold '{name}', graded from "
                            "different files or checks; grade it again in one of them, or leave one out.")
                    continue
                if run_id not in new_run:
                    cur = self.db.execute("INSERT INTO runs (grader_version, started, targets, check_hash) "
                                          "VALUES (?, ?, ?, ?)", runs[run_id])
                    new_run[run_id] = int(cur.lastrowid or 0)
                self.db.execute("INSERT INTO submissions VALUES (?, ?, ?, ?, ?, ?)",
                                (name, content, score, max_score, graded_at, new_run[run_id]))
                self.db.executemany("INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", other.db.execute(
                    "SELECT * FROM checks WHERE submission = ? ORDER BY rowid", (name,)))
                copied += 1
        return copied


def _fmt(x: float) -> str:
    return f"{x:g}"


def export_csv(book: Gradebook, out: Path) -> None:
    """A row per submission: its name, the points of each exercise, the total."""
    order, points = book.exercise_points()
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", *order, "total"])
        for name, score, _ in book.submissions():
            w.writerow([name, *(_fmt(points.get(name, {}).get(e, 0.0)) for e in order), _fmt(score)])


def export_lms(book: Gradebook, out: Path, column: str, points: float | None) -> None:
    """Canvas's gradebook import layout: Student, ID, SIS User ID, Section, then one
    assignment column; a "Points Possible" row first. The submission's name goes in
    Student and SIS User ID; ID and Section are left empty for Canvas to match. The
    assignment holds the percentage, or with `points` the score scaled to that many."""
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Student", "ID", "SIS User ID", "Section", column])
        w.writerow(["Points Possible", "", "", "", _fmt(points if points is not None else 100)])
        for name, score, max_score in book.submissions():
            fraction = score / max_score if max_score else 0.0
            value = fraction * (points if points is not None else 100)
            w.writerow([name, "", name, "", f"{value:.2f}"])
