"""Built-in report formats, all rendered from the one results model (`grader.results`).

`json` (the native format), `gradescope` (results.json per Gradescope's autograder
specification), `junit` (JUnit XML for CI test reporters), `github` (workflow-command
annotations and a step summary), `html` (one self-contained page), `csv` (a row per check)
and `markdown`. Each is `render_<format>(run) -> str` plus a writer `write_<format>(run, path)`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from grader.config import GradeConfig
from grader.hookspecs import hookimpl
from grader.reporting import Reporter, write_json, write_text_atomically
from grader.results import CheckResult, ExerciseResult, RunResult

# Outcomes where the student's code, not the check, went wrong in a way that is not a verdict.
ERROR_OUTCOMES = ("error", "timeout", "crashed")

# Set from [tool.grade] gradescope_hidden_visibility when the plugins are configured.
_settings = {"gradescope_hidden_visibility": "after_published"}


def _num(x: float) -> float | int:
    """Points as people write them: 2, not 2.0."""
    return int(x) if float(x).is_integer() else round(float(x), 4)


def _detail(check: CheckResult) -> str:
    """The check's message and, when there is one, the student's traceback."""
    parts = [check.message.strip()]
    if check.traceback.strip():
        parts.append(check.traceback.rstrip())
    return "\n\n".join(p for p in parts if p)


# --- gradescope --------------------------------------------------------------------------


def render_gradescope(run: RunResult, hidden_visibility: str = "after_published") -> str:
    """Gradescope's results.json: a test per check; hidden checks get `hidden_visibility`."""
    tests: list[dict[str, Any]] = []
    for ei, ex in enumerate(run.exercises, start=1):
        for ci, check in enumerate(ex.checks, start=1):
            test: dict[str, Any] = {
                "name": f"{ex.id} :: {check.name}",
                "number": f"{ei}.{ci}",
                "score": _num(check.points) if check.outcome != "skipped" else 0,
                "max_score": _num(check.max_points) if check.outcome != "skipped" else 0,
                "output": _gradescope_output(check),
                "visibility": hidden_visibility if check.hidden else "visible",
                "tags": [ex.track, ex.id] + ([m.strip() for m in check.mistake.split(",")] if check.mistake else []),
            }
            if check.outcome != "skipped":  # Gradescope knows only passed and failed
                test["status"] = "passed" if check.outcome == "passed" else "failed"
            tests.append(test)
    out = {
        "score": _num(run.score),
        "max_score": _num(run.max_score),
        "execution_time": round(run.duration_s, 3),
        "output": f"**Score: {_num(run.score)}/{_num(run.max_score)}** ({run.percent:.1f}%), "
                  f"graded by llm-grader {run.grader_version}.",
        "output_format": "md",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    return json.dumps(out, indent=2) + "\n"


def _gradescope_output(check: CheckResult) -> str:
    head = f"**{check.outcome}**" + (f": {check.message.strip()}" if check.message.strip() else "")
    if check.traceback.strip():
        return f"{head}\n\n```\n{check.traceback.rstrip()}\n```"
    return head


def write_gradescope(run: RunResult, path: str | None) -> None:
    write_text_atomically(path, render_gradescope(run, _settings["gradescope_hidden_visibility"]))


# --- junit -------------------------------------------------------------------------------


def render_junit(run: RunResult) -> str:
    """JUnit XML: a testsuite per exercise, a testcase per check, points as properties."""
    root = ET.Element("testsuites", name="llm-grader")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for ex in run.exercises:
        counts = {
            "tests": len(ex.checks),
            "failures": sum(c.outcome == "failed" for c in ex.checks),
            "errors": sum(c.outcome in ERROR_OUTCOMES for c in ex.checks),
            "skipped": sum(c.outcome == "skipped" for c in ex.checks),
        }
        for k, v in counts.items():
            totals[k] += v
        suite = ET.SubElement(
            root, "testsuite", name=ex.id, **{k: str(v) for k, v in counts.items()},
            time=f"{sum(c.duration_s for c in ex.checks):.3f}",
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (("title", ex.title), ("score", _num(ex.score)), ("max_score", _num(ex.max_score)),
                            ("status", ex.status)):
            ET.SubElement(props, "property", name=name, value=str(value))
        if ex.error:
            ET.SubElement(suite, "system-err").text = ex.error
        for check in ex.checks:
            case = ET.SubElement(suite, "testcase", name=check.name, classname=ex.id,
                                 time=f"{check.duration_s:.3f}")
            cprops = ET.SubElement(case, "properties")
            for name, value in (("points", _num(check.points)), ("max_points", _num(check.max_points)),
                                ("hidden", str(check.hidden).lower()), ("mistake", check.mistake)):
                if value != "":
                    ET.SubElement(cprops, "property", name=name, value=str(value))
            first_line = check.message.strip().splitlines()[0] if check.message.strip() else check.outcome
            if check.outcome == "failed":
                ET.SubElement(case, "failure", message=first_line, type="failed").text = _detail(check)
            elif check.outcome in ERROR_OUTCOMES:
                ET.SubElement(case, "error", message=first_line, type=check.outcome).text = _detail(check)
            elif check.outcome == "skipped":
                ET.SubElement(case, "skipped", message=check.message.strip())
            if check.output:
                ET.SubElement(case, "system-out").text = check.output
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{run.duration_s:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(run: RunResult, path: str | None) -> None:
    write_text_atomically(path, render_junit(run))


# --- csv ---------------------------------------------------------------------------------

CSV_COLUMNS = ("track", "exercise", "check", "outcome", "points", "max_points", "hidden", "mistake",
               "message", "duration_s")


def render_csv(run: RunResult) -> str:
    """A header and a row per check."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for ex in run.exercises:
        for c in ex.checks:
            w.writerow([ex.track, ex.id, c.name, c.outcome, _num(c.points), _num(c.max_points),
                        str(c.hidden).lower(), c.mistake, c.message, f"{c.duration_s:.3f}"])
    return buf.getvalue()


def write_csv(run: RunResult, path: str | None) -> None:
    write_text_atomically(path, render_csv(run))


# --- github ------------------------------------------------------------------------------

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def student_location(ex: ExerciseResult, check: CheckResult) -> tuple[str, int]:
    """The file and line to annotate: the innermost frame of the student's traceback, or
    line 1 of the exercise's file, `exercises/<track>/<name>.py`."""
    frames = _FRAME.findall(check.traceback)
    if frames:
        file, line = frames[-1]
        if os.path.isabs(file):
            try:
                file = os.path.relpath(file)
            except ValueError:  # another drive on Windows
                pass
        return file.replace(os.sep, "/"), int(line)
    track, _, name = ex.id.partition(".")
    return f"exercises/{track}/{name}.py", 1


def render_github_annotations(run: RunResult) -> str:
    """An `::error` workflow command per check that did not pass (skipped ones excepted), and
    one `::notice` for an exercise not started: a partial submission lists what is left
    instead of an error per check (GitHub shows only the first few annotations of a step)."""
    lines = []
    for ex in run.exercises:
        if ex.status == "not_started":
            first = ex.checks[0] if ex.checks else CheckResult("", "failed", 0.0, 0.0)
            file, line = student_location(ex, first)
            title = f"{ex.id}: not started (0/{_num(ex.max_score)} points)"
            props = f"file={_escape_property(file)},line={line},title={_escape_property(title)}"
            lines.append(f"::notice {props}::{_escape_data(ex.title + ': not started yet.')}\n")
            continue
        for c in ex.checks:
            if c.outcome in ("passed", "skipped"):
                continue
            file, line = student_location(ex, c)
            title = f"{ex.id} {c.name}: {c.outcome} ({_num(c.points)}/{_num(c.max_points)} points)"
            props = f"file={_escape_property(file)},line={line},title={_escape_property(title)}"
            lines.append(f"::error {props}::{_escape_data(c.message.strip() or c.outcome)}\n")
    return "".join(lines)


def write_github(run: RunResult, path: str | None) -> None:
    """Annotations to `path` (stdout, where the runner reads them, by default), and the
    Markdown summary appended to $GITHUB_STEP_SUMMARY when that is set."""
    write_text_atomically(path, render_github_annotations(run))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(render_markdown(run))


# --- markdown and html (jinja2 templates in grader/templates) ----------------------------


def _md_cell(value: Any) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _environment(autoescape: bool) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("grader", "templates"),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_cell"] = _md_cell
    env.filters["num"] = _num
    return env


def _context(run: RunResult) -> dict[str, Any]:
    return {"run": run, "score": _num(run.score), "max_score": _num(run.max_score),
            "error_outcomes": ERROR_OUTCOMES, "detail": _detail}


def render_markdown(run: RunResult) -> str:
    return _environment(autoescape=False).get_template("summary.md.j2").render(_context(run))


def write_markdown(run: RunResult, path: str | None) -> None:
    write_text_atomically(path, render_markdown(run))


def render_html(run: RunResult) -> str:
    """One self-contained page: styles inline, no scripts, no external requests."""
    return _environment(autoescape=True).get_template("report.html.j2").render(_context(run))


def write_html(run: RunResult, path: str | None) -> None:
    write_text_atomically(path, render_html(run))


# --- registration ------------------------------------------------------------------------


@hookimpl
def grade_configure(config: GradeConfig) -> None:
    _settings["gradescope_hidden_visibility"] = config.gradescope_hidden_visibility


@hookimpl
def grade_register_reporters(register: Callable[[str, Reporter], None]) -> None:
    register("json", write_json)
    register("gradescope", write_gradescope)
    register("junit", write_junit)
    register("csv", write_csv)
    register("markdown", write_markdown)
    register("github", write_github)
    register("html", write_html)
