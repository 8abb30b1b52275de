"""The `grade` command.

    grade [TARGET...]        grade the curriculum, a track, an exercise or one check
    grade list               every exercise with its last status
    grade hint EXERCISE      the next hint for an exercise
    grade watch [TARGET...]  re-grade each exercise as it is saved, then move on
    grade check [TARGET...]  prove the checks: references pass, stubs fail, mistakes are caught
    grade release OUT        for instructors: the student edition, without solutions or hidden checks
    grade plugins            loaded plugins and the hooks each implements
    grade roster DIR --gradebook DB   for instructors: grade every student's folder into SQLite
    grade gradebook merge|export      for instructors: combine shard gradebooks, write CSV
    grade new-track NAME     for instructors: a track plugin project to pip install -e
    grade new-exercise T.N   for instructors: add an exercise to an installed track

Exit codes: 0 graded (or, for `grade check`, every check proven); 1 score below
--fail-under; 2 usage or configuration error; 3 internal error; 4 `grade check` found
problems. Nothing here imports torch until grading starts.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from grader import __version__
from grader.errors import ConfigError, GraderError

EXIT_OK, EXIT_BELOW, EXIT_USAGE, EXIT_INTERNAL, EXIT_UNSOUND = 0, 1, 2, 3, 4


IMPLICIT_RUN = "grade.implicit_run"  # ctx.meta key: the first word was taken as a target


class GradeGroup(click.Group):
    """A group whose bare arguments (`grade attention --report json:r.json`) mean `grade run ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h", "--version")):
            ctx.meta[IMPLICIT_RUN] = bool(args) and not args[0].startswith("-")
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _check_first_word(word: str, catalog: Any) -> None:
    """`grade lsit`: a plain word that is neither a command nor a track or exercise is
    reported as such, with the closest of both, not as an unknown track."""
    from grader.catalog import closest

    if any(ch in word for ch in ".*?[") or word in catalog.names():
        return  # a dotted or glob target: the catalog's own message fits it better
    commands = sorted(name for name, c in cli.commands.items() if not c.hidden)
    close = closest(word, commands + catalog.names())
    if close in commands:
        hint = f" Did you mean the command 'grade {close}'?"
    elif close:
        hint = f" Did you mean 'grade {close}'?"
    else:
        hint = ""
    raise GraderError(
        f"'{word}' is neither a command nor a track or exercise.{hint} "
        f"Commands: {', '.join(commands)}; 'grade list' shows the tracks and exercises."
    )


_CONTEXTS: dict[tuple[str, ...], tuple[Any, Any]] = {}


def _context(blocked: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """Configuration and plugins, built when a command starts (never at import), and once:
    `grade_configure` runs once per command, even when plugin commands were looked up first."""
    key = tuple(sorted(b.removeprefix("no:") for b in blocked))
    if key not in _CONTEXTS:
        from grader.config import load_config
        from grader.plugins import GradePlugins

        config = load_config()
        _CONTEXTS[key] = (config, GradePlugins(config, blocked=list(key)))
    return _CONTEXTS[key]


def _blocked_in(args: list[str]) -> tuple[str, ...]:
    """The `-p no:NAME` options of a command line, read before click parses it."""
    out = []
    for i, arg in enumerate(args):
        if arg == "-p" and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            out.append(arg[2:])
    return tuple(out)


@click.group(cls=GradeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llm-grader")
def cli() -> None:
    """Grade your implementations of the LLM curriculum.

    \b
    grade                                  everything
    grade attention                        one track
    grade attention.sdpa                   one exercise
    grade attention.sdpa.causal_top_left   one check
    grade 'foundations.*'                  a glob

    Run `grade run --help` for grading options (--solutions, --report, -j, --fail-under...).
    """


@cli.command("run")
@click.argument("targets", nargs=-1)
@click.option("--solutions", type=click.Path(file_okay=False, path_type=Path), help="Directory of solutions to grade, laid out <track>/<name>.py (default: exercises/).")
@click.option("--report", "reports", multiple=True, metavar="FORMAT[:PATH]", help="Write a report, e.g. json:results.json (repeatable; no PATH means stdout).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Exercises graded in parallel.")
@click.option("--fail-under", type=click.FloatRange(0, 100), default=None, help="Exit 1 when the score is below this percentage.")
@click.option("--hidden", is_flag=True, help="Also run hidden checks (instructors and CI).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds allowed per call into a solution.")
@click.option("--seed", default=None, help="Salt for the random inputs of every check.")
@click.option("--isolation", type=click.Choice(["auto", "strict", "process"]), default=None,
              help="strict: refuse to grade without the sandbox; auto: fall back to process isolation; "
                   "process: no namespaces. Default: strict when CI is set or with --hidden, else auto.")
@click.option("-p", "blocked", multiple=True, metavar="no:NAME", help="Disable a plugin by name.")
@click.option("-q", "--quiet", is_flag=True, help="Only the final score line.")
@click.option("--all", "expand_all", is_flag=True, help="Show every failing check in full (by default the first one is, "
              "and the others get a line each).")
def run_command(targets: tuple[str, ...], solutions: Path | None, reports: tuple[str, ...], jobs: int | None,
                fail_under: float | None, hidden: bool, timeout: float | None, seed: str | None,
                isolation: str | None, blocked: tuple[str, ...], quiet: bool, expand_all: bool) -> None:
    """Grade TARGETS (tracks, exercises, checks or globs; default: everything)."""
    from grader.reporting import parse_report_spec

    config, plugins = _context(blocked)
    if solutions is None:
        from grader import workspace

        workspace.require(config, "grade")
    catalog = plugins.catalog()
    if targets and click.get_current_context().find_root().meta.get(IMPLICIT_RUN):
        _check_first_word(targets[0], catalog)
    selection = catalog.select(list(targets))
    available = plugins.reporters()
    report_specs = [parse_report_spec(r, available) for r in (*config.reports, *reports)]
    to_stdout = [fmt for fmt, path in report_specs if path in (None, "-")]
    if len(to_stdout) > 1:
        raise ConfigError(f"{len(to_stdout)} reports ({', '.join(to_stdout)}) would be written to stdout, one after "
                          "the other; give all but one a path, e.g. --report junit:junit.xml.")
    solutions_dir = (solutions.resolve() if solutions else config.solutions) or Path("exercises").resolve()
    if not solutions_dir.is_dir():
        raise ConfigError(f"the solutions directory {solutions_dir} does not exist; pass --solutions DIR or run 'grade' in your project.")
    fail_under = config.fail_under if fail_under is None else fail_under

    from grader.runner import RunOptions, resolve_isolation, run

    if isolation is None:
        isolation = "strict" if hidden or os.environ.get("CI") else "auto"
    level, note = resolve_isolation(isolation)
    if note:
        click.echo(note, err=True)
    from grader.release import require_recorded_inputs
    from grader.state import ProgressState
    from grader.terminal import TerminalReport, guide_for, missing_files

    require_recorded_inputs([e for e, _ in selection], hidden, str(seed if seed is not None else config.seed))
    options = RunOptions(
        mode="isolated",
        solutions=solutions_dir,
        display_root=Path.cwd(),
        salt=str(seed if seed is not None else config.seed),
        hidden=hidden,
        timeout=timeout if timeout is not None else config.timeout,
        jobs=jobs or config.jobs,
        isolation=level,
        blocked=tuple(b.removeprefix("no:") for b in blocked),
    )
    # With a report on stdout, stdout is the report's alone: people read stderr.
    term = TerminalReport(stderr=bool(to_stdout), missing=missing_files([e for e, _ in selection], solutions_dir))
    if not quiet:
        term.start([e.id for e, _ in selection])

    def exercise_done(result: Any) -> None:
        if not quiet:
            term.exercise_done(result)
        plugins.exercise_finished(result)

    try:
        result = run(catalog, selection, options, on_exercise=exercise_done,
                     on_check=None if quiet else term.check_done)
    finally:
        term.stop()
    for fmt, path in report_specs:
        try:
            available[fmt](result, path)
        except OSError as e:
            raise ConfigError(f"the {fmt} report could not be written to {path}: {e.strerror or e}; "
                              "choose a path you can write.") from None
    plugins.run_finished(result)
    state = ProgressState(config.state_dir)
    # The progress is that of the project's own solutions: grading another directory
    # (--solutions reference, a classmate's copy) leaves it alone, and an exercise graded only
    # in part (some of its checks) keeps the status it had.
    if config.solutions is None or solutions_dir == Path(config.solutions).resolve():
        state.record(result, skip={e.id for e, checks in selection if checks is not None})
        state.save()
    below = fail_under is not None and result.percent < fail_under
    if quiet:
        term.score_line(result)
        if below:
            term.fail_under_line(fail_under)
    else:
        term.summary(result, guide_for(catalog, selection, solutions_dir, state, expand_all, fail_under))
    if below:
        sys.exit(EXIT_BELOW)


@cli.command("list")
def list_command() -> None:
    """Every exercise in course order, with its status from the last run."""
    from grader import workspace
    from grader.state import ProgressState
    from grader.terminal import TerminalReport, status_rows

    config, plugins = _context()
    workspace.require(config, "grade list")
    TerminalReport().exercise_table(status_rows(plugins.catalog().exercises, ProgressState(config.state_dir)))


@cli.command("hint")
@click.argument("exercise")
def hint_command(exercise: str) -> None:
    """Show the next hint for EXERCISE (one more each time you ask)."""
    from grader import workspace
    from grader.state import ProgressState
    from grader.terminal import hint_text

    config, plugins = _context()
    workspace.require(config, f"grade hint {exercise}")
    ex = plugins.catalog().exercise(exercise)
    if not ex.hints:
        click.echo(f"{ex.id} has no hints.")
        return
    state = ProgressState(config.state_dir)
    index, again = state.next_hint(ex.id, len(ex.hints))
    state.save()
    click.echo(hint_text(ex, index, again, f"grade hint {ex.id}"))


@cli.command("watch")
@click.argument("targets", nargs=-1)
@click.option("--solutions", type=click.Path(file_okay=False, path_type=Path), help="Directory of solutions (default: exercises/).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds allowed per call into a solution.")
@click.option("--isolation", type=click.Choice(["auto", "strict", "process"]), default="auto", show_default=True,
              help="As for grading: strict refuses to grade without the sandbox.")
def watch_command(targets: tuple[str, ...], solutions: Path | None, timeout: float | None, isolation: str) -> None:
    """Re-grade each exercise as you save it, and move on when it passes (default: everything)."""
    from rich.console import Console

    from grader.runner import RunOptions, resolve_isolation
    from grader.watch import watch

    config, plugins = _context()
    if solutions is None:
        from grader import workspace

        workspace.require(config, "grade watch")
    catalog = plugins.catalog()
    exercises = [exercise for exercise, _ in catalog.select(list(targets))]
    solutions_dir = (solutions.resolve() if solutions else config.solutions) or Path("exercises").resolve()
    if not solutions_dir.is_dir():
        raise ConfigError(f"the solutions directory {solutions_dir} does not exist; pass --solutions DIR or run 'grade watch' in your project.")
    level, note = resolve_isolation(isolation)
    console = Console(highlight=False)
    if note:
        console.print(note)
    from grader.release import require_recorded_inputs

    require_recorded_inputs(exercises, False, str(config.seed))
    options = RunOptions(mode="isolated", solutions=solutions_dir, display_root=Path.cwd(), salt=str(config.seed),
                         timeout=timeout if timeout is not None else config.timeout, jobs=1, isolation=level)
    watch(config, catalog, exercises, options, console)


@cli.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
def init_command(directory: Path) -> None:
    """Start a workspace in DIRECTORY: every exercise's stub, a grade.toml and a README."""
    from grader import workspace

    _, plugins = _context()
    written, kept = workspace.init(directory.resolve(), plugins.catalog())
    n_stubs = sum(1 for p in written if p.suffix == ".py")
    click.echo(f"Wrote {n_stubs} exercise stubs, grade.toml and README.md to {directory}."
               if not kept else f"Wrote {len(written)} files to {directory}; kept {len(kept)} that were already there.")
    click.echo(f"Next: cd {directory} && grade")


@cli.command("check")
@click.argument("targets", nargs=-1)
@click.option("--isolated", is_flag=True, help="Run the checks through solution processes, as students are graded.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Check this many exercises at a time, each in its own worker process.")
@click.option("--report", "report", default=None, metavar="json:PATH",
              help="Also write the findings as JSON (json:- for stdout): per exercise the reference's and "
                   "the stub's verdicts, each known mistake's catching checks, and the problems.")
@click.option("--quick", is_flag=True, help="Once a known mistake is named, stop each further one at the first "
                                            "check that catches it: the same proof, shorter lists.")
@click.option("--hidden/--public-only", default=True, show_default=True,
              help="Also run the hidden checks: the reference must pass them, the stub fail them and every known "
                   "mistake still fail a check. --public-only proves what the students' edition can show.")
def check_command(targets: tuple[str, ...], isolated: bool, jobs: int, report: str | None, quick: bool,
                  hidden: bool) -> None:
    """For instructors: the reference scores full marks, the stub zero, every mistake is caught.

    Also: the stub has the reference's public names and signatures, and every file in a
    track's folders is listed by it. Exits 4 when anything is wrong.
    """
    import json

    from grader.selfcheck import check_exercises, track_problems

    if report is not None and not report.startswith("json:"):
        raise click.UsageError(f"grade check writes only JSON reports (json:PATH or json:-), not '{report}'.")
    path = report.removeprefix("json:") if report else None
    to_stdout = path in ("", "-")
    echo = (lambda text: click.echo(text, err=True)) if to_stdout else click.echo  # stdout is the report's
    _, plugins = _context()
    catalog = plugins.catalog()
    failed = 0
    exercises = [exercise for exercise, _ in catalog.select(list(targets))]
    released = [e.id for e in exercises if e.recorded is not None]
    if released:
        raise ConfigError(f"{released[0]} comes from the student edition of the course, which has no references or "
                          "known mistakes to prove the checks with; run 'grade check' in the course's source repository.")
    mode = "isolated" if isolated else "direct"
    findings: dict[str, Any] = {"tracks": [], "exercises": []}
    for track in catalog.tracks:
        if any(e.track == track.id for e in exercises):
            problems = track_problems(track)
            findings["tracks"].append({"id": track.id, "ok": not problems, "problems": problems})
            if problems:
                echo(f"{click.style('FAIL', fg='red')}  track {track.id}")
                for problem in problems:
                    echo(click.style(f"      problem: {problem}", fg="red"))
                failed += 1
    for exercise, verdict in zip(exercises, check_exercises(catalog, exercises, mode, jobs, Path.cwd(), quick, hidden)):
        mark = click.style("ok", fg="green") if verdict.ok else click.style("FAIL", fg="red")
        echo(f"{mark}  {exercise.id}")
        for line in verdict.lines:
            echo(f"      {line}")
        for problem in verdict.problems:
            echo(click.style(f"      problem: {problem}", fg="red"))
        findings["exercises"].append(verdict.to_dict())
        failed += not verdict.ok
    findings["ok"] = not failed
    if path is not None:
        text = json.dumps(findings, indent=1)
        if to_stdout:
            click.echo(text)
        else:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text + "\n")
            except OSError as e:
                raise ConfigError(f"the check report could not be written to {path}: {e.strerror or e}; "
                                  "choose a path you can write.") from None
    if failed:
        echo(f"{failed} track(s) or exercise(s) have problems.")
        sys.exit(EXIT_UNSOUND)


@cli.command("release")
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("targets", nargs=-1)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Record this many exercises at a time, each in its own worker process.")
@click.option("--no-verify", is_flag=True, help="Skip grading every recorded solution again in the new edition.")
def release_command(out: Path, targets: tuple[str, ...], jobs: int, no_verify: bool) -> None:
    """For instructors: write the student edition of the course to OUT.

    OUT gets the stubs, the public checks, hints and docs, and no reference source, known-mistake
    source or hidden check. The reference's and the known mistakes' answers to the public checks
    are recorded (the reference, the stub and each mistake graded as the solution) and replayed
    there, so every public check gives the full course's verdict and message. Then each of those
    solutions is graded again in OUT and compared (skip with --no-verify). Exits 4 when anything
    differs or cannot be recorded.
    """
    from grader import release

    config, plugins = _context()
    catalog = plugins.catalog()
    exercises = [exercise for exercise, _ in catalog.select(list(targets))]
    if not exercises:
        raise ConfigError("no exercise is selected: there is nothing to release.")
    release.validate(exercises, out.resolve())
    click.echo(f"Recording {len(exercises)} exercise(s) with seed {config.seed}: the reference, the stub and every "
               "known mistake graded as the solution.")

    def progress(stage: str, outcome: Any) -> None:
        if stage == "recorded" and not no_verify and not outcome.problems:
            return
        mark = click.style("ok", fg="green") if not outcome.problems else click.style("FAIL", fg="red")
        click.echo(f"{mark}  {outcome.exercise}")
        for line in outcome.lines():
            click.echo(f"      {line}")
        for problem in outcome.problems:
            click.echo(click.style(f"      problem: {problem}", fg="red"))

    outcomes = release.release(catalog, exercises, out.resolve(), config.seed, jobs, not no_verify, Path.cwd(),
                               progress)
    bad = [o for o in outcomes if o.problems]
    if bad:
        click.echo(f"{len(bad)} exercise(s) have problems: the edition in {out} does not grade as the full course "
                   "does. Fix them and release again into a new folder.")
        sys.exit(EXIT_UNSOUND)
    size = sum(o.size for o in outcomes) / 2**20
    proof = "; every recorded solution grades there as in the full course" if not no_verify else ""
    click.echo(f"Wrote the student edition of {len(outcomes)} exercise(s) to {out} ({size:.1f} MiB of recorded "
               f"outputs){proof}. It holds no reference, known-mistake source or hidden check.")
    click.echo(f"Next: publish {out} as the students' repository; grade their work here with 'grade --hidden'.")


@cli.command("roster")
@click.argument("submissions", type=click.Path(path_type=Path))
@click.argument("targets", nargs=-1)
@click.option("--gradebook", "gradebook_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="SQLite gradebook to write; an existing one is resumed: unchanged submissions are not graded again.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Submissions graded in parallel, each worker process a warm judge of its own.")
@click.option("--shard", default=None, metavar="K/N", help="Grade only shard K of N (1-based), for CI matrices and "
              "job arrays; a stable hash of each name picks its shard. Combine with 'grade gradebook merge'.")
@click.option("--hidden", is_flag=True, help="Also run hidden checks.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds allowed per call into a solution.")
@click.option("--seed", default=None, help="Salt for the random inputs of every check.")
@click.option("--isolation", type=click.Choice(["auto", "strict", "process"]), default=None,
              help="As for grading; default strict when CI is set or with --hidden, else auto.")
def roster_command(submissions: Path, targets: tuple[str, ...], gradebook_path: Path, jobs: int, shard: str | None,
                   hidden: bool, timeout: float | None, seed: str | None, isolation: str | None) -> None:
    """For instructors: grade every student's folder in SUBMISSIONS into a gradebook.

    SUBMISSIONS holds one folder per student, each laid out like a solutions directory
    (<track>/<name>.py) or holding one in exercises/ (a repository clone); or it is a .zip
    of such folders, perhaps inside one top folder (GitHub Classroom and Gradescope exports). TARGETS as for grading (default: everything). A re-run grades only
    submissions whose files, or whose checks, changed: a killed run resumes.
    """
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from grader.gradebook import Gradebook
    from grader.roster import find_submissions, grade_roster, parse_shard, shard_of, unpack_zip
    from grader.runner import RunOptions, resolve_isolation

    config, plugins = _context()
    catalog = plugins.catalog()
    selection = catalog.select(list(targets))
    import shutil
    import tempfile

    unpacked = None
    if submissions.is_file() and submissions.suffix.lower() == ".zip":
        unpacked = Path(tempfile.mkdtemp(prefix="grade-roster-zip-"))
        found = find_submissions(unpack_zip(submissions, unpacked))
    else:
        found = find_submissions(submissions.resolve())
    if shard is not None:
        k, n = parse_shard(shard)
        found = [s for s in found if shard_of(s.name, n) == k]
    if isolation is None:
        isolation = "strict" if hidden or os.environ.get("CI") else "auto"
    level, note = resolve_isolation(isolation)
    console = Console(stderr=True, highlight=False)
    if note:
        console.print(note)
    from grader.release import require_recorded_inputs

    require_recorded_inputs([e for e, _ in selection], hidden, str(seed if seed is not None else config.seed))
    options = RunOptions(mode="isolated", salt=str(seed if seed is not None else config.seed), hidden=hidden,
                         timeout=timeout if timeout is not None else config.timeout, jobs=jobs, isolation=level,
                         blocked=())
    book = Gradebook(gradebook_path)
    progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
    task = progress.add_task("", total=None)
    t0 = time.monotonic()

    def started(count: int) -> None:
        progress.update(task, total=count)
        if count:
            progress.start()

    def done(submission: Any, result: Any) -> None:
        progress.update(task, advance=1, description=f"{submission.name} {result.score:g}/{result.max_score:g}")

    try:
        summary = grade_roster(catalog, selection, options, found, book, list(targets), on_start=started,
                               on_done=done, on_problem=lambda text: progress.console.print(text))
    finally:
        progress.stop()
        book.close()
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)
    console.print(f"{summary.graded} graded, {summary.skipped} unchanged since last graded, "
                  f"{summary.failed} failed to grade, in {time.monotonic() - t0:.1f} s; gradebook: {gradebook_path}")
    if summary.failed:
        sys.exit(EXIT_INTERNAL)


@cli.group("gradebook")
def gradebook_group() -> None:
    """For instructors: combine and export gradebooks written by 'grade roster'."""


@gradebook_group.command("merge")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def gradebook_merge_command(out: Path, inputs: tuple[Path, ...]) -> None:
    """Combine shard gradebooks INPUTS into OUT (created, or added to). A submission held
    by two of them with different files or checks is an error."""
    from grader.gradebook import Gradebook

    book = Gradebook(out)
    try:
        for path in inputs:
            other = Gradebook(path)
            try:
                copied = book.merge_from(other)
            finally:
                other.close()
            click.echo(f"{path}: {copied} submission(s) merged", err=True)
    finally:
        book.close()


@gradebook_group.command("export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A row per submission: its name, a column per exercise (points), the total last.")
@click.option("--lms", "lms_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A Canvas-style gradebook import: columns Student, ID, SIS User ID, Section, then one assignment "
                   "column; a 'Points Possible' row first. Student and SIS User ID hold the submission's name, ID and "
                   "Section are empty; the assignment holds the percentage (or, with --lms-points P, the score "
                   "scaled to P points).")
@click.option("--lms-column", default="llm-grader", show_default=True, help="The assignment column's title.")
@click.option("--lms-points", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Points the assignment is worth (default: a percentage, out of 100).")
def gradebook_export_command(path: Path, csv_out: Path | None, lms_out: Path | None, lms_column: str,
                             lms_points: float | None) -> None:
    """Write the gradebook at PATH as CSV (--csv) and/or as an LMS import (--lms)."""
    from grader.gradebook import Gradebook, export_csv, export_lms

    if csv_out is None and lms_out is None:
        raise click.UsageError("give --csv OUT, --lms OUT or both.")
    book = Gradebook(path)
    try:
        if csv_out is not None:
            export_csv(book, csv_out)
        if lms_out is not None:
            export_lms(book, lms_out, lms_column, lms_points)
    except OSError as e:
        raise ConfigError(f"the export could not be written: {e}; choose a path you can write.") from None
    finally:
        book.close()


@cli.command("gradescope-bundle")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def gradescope_bundle_command(out: Path) -> None:
    """For instructors: a Gradescope autograder zip (setup.sh, run_autograder, the course).

    Upload OUT to a Gradescope programming assignment. Its image installs a CPU build of
    torch and this course; each submission (files laid out as exercises/ is) is graded with
    the hidden checks into /autograder/results/results.json.
    """
    from grader.bundle import gradescope_bundle

    names = gradescope_bundle(out)
    click.echo(f"Wrote {out}: setup.sh, run_autograder and the course ({len(names) - 2} files). Upload it as the "
               "autograder of a Gradescope programming assignment; students submit their exercise files "
               "(<track>/<name>.py).")


@cli.command("new-track")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the track's project folder.")
def new_track_command(name: str, directory: Path) -> None:
    """For instructors: a track plugin project (one exercise, its checks, stub and reference)."""
    from grader.scaffold import new_track

    root = new_track(name, directory)
    click.echo(f"Created {root}: the track '{name}' with one exercise, {name}.scale. Next:\n"
               f"  pip install -e {root}          register the track with llm-grader\n"
               f"  grade check {name}               prove its checks, and see what is still missing\n"
               f"  grade new-exercise {name}.NAME   add an exercise\n"
               f"  grade {name}                     grade a student's solutions/{name}/<exercise>.py\n"
               "Writing checks: docs/plugins.md.")


@cli.command("new-exercise")
@click.argument("exercise")
def new_exercise_command(exercise: str) -> None:
    """For instructors: add TRACK.NAME to an installed track (toml, checks, stub, reference)."""
    from grader.scaffold import new_exercise

    track_id, _, name = exercise.partition(".")
    if not name:
        raise click.UsageError(f"'{exercise}' is not TRACK.NAME (for example: grade new-exercise mytrack.relu).")
    _, plugins = _context()
    track = plugins.catalog().track(track_id)
    for path in new_exercise(track.directory, track.id, name, track.stubs, track.reference):
        click.echo(f"created {path}")
    click.echo(f"Listed in {track.directory / 'track.toml'}. Next: grade check {track.id}.{name}")


@cli.command("plugins")
def plugins_command() -> None:
    """Loaded plugins, where each comes from and the hooks it implements."""
    _, plugins = _context()
    for name, origin, hooks in plugins.describe():
        click.echo(f"{name}\n    {origin}\n    hooks: {', '.join(hooks) or '(none)'}")


def _add_plugin_commands(blocked: tuple[str, ...]) -> None:
    try:
        _, plugins = _context(blocked)
    except GraderError:
        return  # a broken config is reported by the command that needs it
    plugins.register_commands(cli)


def main(argv: list[str] | None = None) -> None:
    """The console script. Called without `argv` (as `grade`), it ends the process with
    os._exit once its output is flushed: every process and file of the run is closed by
    then, and tearing torch down took another half second after the last line."""
    try:
        _main(argv)
    except SystemExit as e:
        if argv is not None:
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _main(argv: list[str] | None) -> None:
    args = sys.argv[1:] if argv is None else argv
    _CONTEXTS.clear()  # each command reads the configuration afresh
    if args and args[0] not in cli.commands and not args[0].startswith("-"):
        _add_plugin_commands(_blocked_in(args))  # only when the command is not a built-in one
    try:
        cli.main(args=args, prog_name="grade", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_USAGE)
    except GraderError as e:
        click.echo(f"grade: {e}", err=True)
        sys.exit(EXIT_USAGE)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("grade: interrupted; solution processes were stopped.", err=True)
        sys.exit(130)
    except BaseException:  # anything else is our bug: say so, and exit 3
        traceback.print_exc()
        click.echo("grade: internal error (a bug in llm-grader, not in your code). Please report it with the traceback above.", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(EXIT_OK)
