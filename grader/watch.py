"""`grade watch`: re-grade an exercise each time its file is saved, then move on.

The judge stays warm between saves: torch, pytest, the plugins, the references and the
zygote are loaded once (`runner.WarmJudge`), so a re-grade only forks a fresh solution
process and runs the checks. It starts on the first exercise of the target that has not
passed yet and, when that one passes, goes on to the next, in course order. A save of
any other exercise's file grades that one. Keys: h (hint), n (next exercise), l (list),
q (quit). Nothing a save contains can stop it: a broken file is one more result.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

KEYS = "[bold]h[/] hint · [bold]n[/] next exercise · [bold]l[/] list · [bold]q[/] quit"


class Keys:
    """Single key presses from a terminal (cbreak mode, restored on exit), or lines from a pipe."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdin
        self.fd: int | None = None
        self.saved: Any = None
        try:
            # A descriptor of our own: while a grade runs, pytest puts /dev/null on fd 0.
            self.fd = os.dup(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            self.fd = None
        if self.fd is not None and os.isatty(self.fd):
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def read(self, timeout: float) -> str | None:
        """The next key within `timeout` seconds, '' at end of input, None if none came."""
        if self.fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        data = os.read(self.fd, 64).decode(errors="replace")
        if not data:
            return ""  # end of input
        return data.strip()[:1].lower() or None

    def close(self) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.saved = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Saves:
    """Saved exercise files, seen by watchfiles in a background thread and passed to `put`."""

    def __init__(self, directory: Path, put: Any) -> None:
        self.put = put
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(directory,), daemon=True)
        self.thread.start()

    def _run(self, directory: Path) -> None:
        import watchfiles

        for changes in watchfiles.watch(directory, stop_event=self.stop, debounce=400, step=30,
                                        watch_filter=lambda change, path: path.endswith(".py"),
                                        raise_interrupt=False):
            for path in dict.fromkeys(Path(p) for change, p in changes if change != watchfiles.Change.deleted):
                self.put("save", path)

    def close(self) -> None:
        self.stop.set()


class KeyReader:
    """Key presses, read in a background thread and passed to `put`, so that q works mid-grade."""

    def __init__(self, keys: Keys, put: Any) -> None:
        self.keys, self.put = keys, put
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            key = self.keys.read(0.1)
            if key is not None:
                self.put("key", key)
            if key == "":
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=1)


class Watcher:
    def __init__(self, config: Any, catalog: Any, exercises: list[Any], options: Any, console: Any) -> None:
        from grader.runner import WarmJudge
        from grader.state import ProgressState

        self.catalog, self.exercises, self.options = catalog, exercises, options
        self.console = console
        self.state = ProgressState(config.state_dir)
        self.warm = WarmJudge(exercises=list(exercises))
        self.current = self._first_unfinished(0)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.busy: Any = None  # the exercise being graded
        self.stopping = False  # a grade is being stopped by a key or a newer save
        self.user_interrupt = False  # Ctrl-C

    # --- events from the threads -----------------------------------------------------------

    def put(self, kind: str, value: Any) -> None:
        """Queue a key or a save; `q` or a newer save of the file being graded stops that grade
        (a real signal, so that a wait on a hanging solution ends at once)."""
        self.events.put((kind, value))
        busy = self.busy
        if busy is None or self.stopping:
            return
        if (kind == "key" and value in ("q", "")) or (kind == "save" and self.exercise_for(value) is busy):
            self.stopping = True
            os.kill(os.getpid(), signal.SIGINT)

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.stopping:
            if self.busy is not None:
                raise KeyboardInterrupt
            return  # the grade ended before the signal came: nothing to stop
        self.user_interrupt = True
        raise KeyboardInterrupt

    # --- what to grade -----------------------------------------------------------------

    def _first_unfinished(self, start: int) -> Any:
        for e in self.exercises[start:]:
            if (self.state.status(e.id) or {}).get("status") != "passed":
                return e
        return None

    def exercise_for(self, path: Path) -> Any:
        try:
            relative = path.resolve().relative_to(self.options.solutions.resolve())
        except ValueError:
            return None
        if len(relative.parts) != 2:
            return None
        wanted = f"{relative.parts[0]}.{Path(relative.parts[1]).stem}"
        return next((e for e in self.exercises if e.id == wanted), None)

    def stub_path(self, exercise: Any) -> str:
        from grader.terminal import student_file

        return student_file(self.options.solutions, exercise)

    # --- grading -------------------------------------------------------------------------

    def grade(self, exercise: Any, why: str) -> Any:
        from grader.errors import GraderError
        from grader.runner import run
        from grader.terminal import TerminalReport, guide_for, missing_files

        c = self.console
        c.rule(f"[dim]{time.strftime('%H:%M:%S')}[/] {why}", align="left")
        term = TerminalReport(c, missing=missing_files([exercise], self.options.solutions))
        self.busy, self.stopping = exercise, False
        try:
            result = run(self.catalog, [(exercise, None)], self.options, on_exercise=term.exercise_done, warm=self.warm)
        except KeyboardInterrupt:
            if not self.stopping:
                raise
            result = None
        except (GraderError, RuntimeError, OSError) as e:  # the judge itself could not grade: say so, go on
            c.print(f"[red]Could not grade {exercise.id}: {e}[/]")
            return None
        finally:
            self.busy = None
        if self.user_interrupt:  # pytest ends its session quietly on Ctrl-C; we end the watch
            raise KeyboardInterrupt
        if self.stopping:
            self.stopping = False
            c.print(f"[dim]Stopped grading {exercise.id}.[/]")
            return None
        self.state.record(result)
        self.state.save()
        term.summary(result, guide_for(self.catalog, [(exercise, None)], self.options.solutions, self.state,
                                       expand_all=False, fail_under=None))
        return result

    def grade_current(self, why: str) -> None:
        """Grade the current exercise; while it passes, go on to the next unfinished one."""
        while self.current is not None:
            result = self.grade(self.current, why)
            if result is None or result.percent < 100:
                return
            index = self.exercises.index(self.current)
            following = self._first_unfinished(index + 1)
            if following is None:
                self.current = None
                break
            self.console.print(f"[green]{self.current.id} passes.[/] Next: [bold]{following.id}[/] "
                               f"({following.title}): open {self.stub_path(following)}")
            self.current = following
            why = f"next: {following.id}"
        self.console.print("[green]Every exercise here passes.[/] Save any file to grade it again; q quits.")

    def hint(self) -> None:
        exercise = self.current
        if exercise is None:
            self.console.print("Every exercise here passes: no hint needed.")
            return
        if not exercise.hints:
            self.console.print(f"{exercise.id} has no hints.")
            return
        from grader.terminal import hint_text

        index, again = self.state.next_hint(exercise.id, len(exercise.hints))
        self.state.save()
        self.console.print(hint_text(exercise, index, again, "press h"), markup=False)

    def show_list(self) -> None:
        from grader.terminal import TerminalReport, status_rows

        TerminalReport(self.console).exercise_table(status_rows(self.exercises, self.state))

    def skip(self) -> None:
        if self.current is None:
            self.console.print("No exercise left to go on to.")
            return
        index = self.exercises.index(self.current)
        if index + 1 >= len(self.exercises):
            self.console.print(f"{self.current.id} is the last exercise here.")
            return
        self.current = self.exercises[index + 1]
        self.grade_current(f"next: {self.current.id}")

    def prompt(self) -> None:
        where = f"{self.current.id} ({self.stub_path(self.current)})" if self.current else "every exercise"
        self.console.print(f"\n[dim]Watching {where}. Save to re-grade.[/] {KEYS}")

    # --- the loop --------------------------------------------------------------------------

    def loop(self) -> None:
        self.grade_current(f"watching {self.options.solutions}" if self.current else "")
        self.prompt()
        while True:
            kind, value = self.events.get()
            pending = [(kind, value)]
            while not self.events.empty():  # several saves at once are graded once each
                pending.append(self.events.get())
            acted = False
            graded: set[str] = set()
            for kind, value in pending:
                if kind == "key":
                    if value in ("q", ""):
                        return
                    acted |= self.on_key(value)
                    continue
                exercise = self.exercise_for(value)
                if exercise is None or exercise.id in graded:
                    continue
                graded.add(exercise.id)
                acted = True
                if exercise is self.current:
                    self.grade_current(f"saved {self.stub_path(exercise)}")
                else:
                    self.grade(exercise, f"saved {self.stub_path(exercise)}")
            if acted:
                self.prompt()

    def on_key(self, key: str) -> bool:
        if key == "h":
            self.hint()
        elif key == "l":
            self.show_list()
        elif key == "n":
            self.skip()
        else:
            return False
        return True

    def close(self) -> None:
        self.warm.close()


def watch(config: Any, catalog: Any, exercises: list[Any], options: Any, console: Any) -> None:
    watcher = Watcher(config, catalog, exercises, options, console)
    previous = signal.signal(signal.SIGINT, watcher.on_sigint)
    keys = Keys()
    saves = Saves(options.solutions, watcher.put)
    reader = KeyReader(keys, watcher.put)
    try:
        watcher.loop()
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
        keys.close()
        saves.close()
        watcher.close()
        signal.signal(signal.SIGINT, previous)
    console.print("Stopped watching.")
