"""The results model: what a run found, per check, exercise, track and run.

`RunResult.to_dict()` is the native, versioned JSON format (schema `llm-grader/results/1`);
every other report is rendered from it. Nothing here formats text for a terminal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "llm-grader/results/1"
OUTCOMES = ("passed", "failed", "error", "timeout", "crashed", "skipped")
STATUSES = ("passed", "partial", "failed", "not_started", "error")


@dataclass
class CheckResult:
    name: str
    outcome: str
    points: float
    max_points: float
    message: str = ""
    traceback: str = ""
    output: str = ""
    duration_s: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)
    hidden: bool = False
    # True when the failure is the stub's NotImplementedError: the student has not started.
    not_implemented: bool = False
    mistake: str = ""  # the known mistake the message names; several are joined by ", "

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class ExerciseResult:
    id: str
    title: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""
    hidden_not_run: int = 0  # hidden checks this exercise has that this run left out (no --hidden)

    @property
    def track(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks if c.outcome != "skipped")

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks if c.outcome != "skipped")

    @property
    def skipped_points(self) -> float:
        return sum(c.max_points for c in self.checks if c.outcome == "skipped")

    @property
    def status(self) -> str:
        graded = [c for c in self.checks if c.outcome != "skipped"]
        if self.error or any(c.outcome == "error" for c in graded):
            return "error"
        if not graded:
            return "not_started"
        passed = [c for c in graded if c.outcome == "passed"]
        if len(passed) == len(graded):
            return "passed"
        if passed:
            return "partial"
        return "not_started" if all(c.not_implemented for c in graded) else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "score": self.score,
            "max_score": self.max_score,
            "skipped_points": self.skipped_points,
            "status": self.status,
            "error": self.error,
            "hidden_not_run": self.hidden_not_run,
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExerciseResult:
        return cls(
            id=d["id"],
            title=d["title"],
            checks=[CheckResult.from_dict(c) for c in d["checks"]],
            error=d.get("error", ""),
            hidden_not_run=int(d.get("hidden_not_run", 0)),
        )


@dataclass
class TrackResult:
    id: str
    title: str
    exercises: list[ExerciseResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "score": self.score,
            "max_score": self.max_score,
            "exercises": [e.to_dict() for e in self.exercises],
        }


@dataclass
class RunResult:
    grader_version: str
    started: str
    duration_s: float
    environment: dict[str, Any]
    tracks: list[TrackResult] = field(default_factory=list)

    @property
    def exercises(self) -> list[ExerciseResult]:
        return [e for t in self.tracks for e in t.exercises]

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tracks)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tracks)

    @property
    def skipped_points(self) -> float:
        return sum(e.skipped_points for e in self.exercises)

    @property
    def hidden_not_run(self) -> int:
        return sum(e.hidden_not_run for e in self.exercises)

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "grader_version": self.grader_version,
            "started": self.started,
            "duration_s": self.duration_s,
            "environment": self.environment,
            "score": self.score,
            "max_score": self.max_score,
            "skipped_points": self.skipped_points,
            "tracks": [t.to_dict() for t in self.tracks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not an llm-grader results file (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        run = cls(
            grader_version=d["grader_version"],
            started=d["started"],
            duration_s=d["duration_s"],
            environment=d["environment"],
        )
        for t in d["tracks"]:
            run.tracks.append(
                TrackResult(t["id"], t["title"], [ExerciseResult.from_dict(e) for e in t["exercises"]])
            )
        return run
