"""Exceptions that cross the judge / solution-process boundary, and user-facing errors."""

from __future__ import annotations


class GraderError(Exception):
    """A problem the user can fix (bad config, unknown target); its message says how."""


class ConfigError(GraderError):
    """The configuration file or a command-line option is invalid."""


class IsolationUnavailable(GraderError):
    """`--isolation strict` was asked for where the sandbox cannot be built."""


class SolutionFailure(Exception):
    """Base class for everything that goes wrong on the solution side of a check."""

    outcome = "failed"


class SolutionError(SolutionFailure):
    """The student's code raised an exception.

    Carries the student's exception type name, its message and a traceback that keeps only
    frames from the student's own files.
    """

    def __init__(self, exc_type: str, message: str, traceback: str = "", call: str = ""):
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.call = call
        where = f" in {call}" if call else ""
        super().__init__(f"{exc_type}{where}: {message}" if message else f"{exc_type}{where}")

    @property
    def not_implemented(self) -> bool:
        return self.exc_type == "NotImplementedError"


class SolutionTimeout(SolutionFailure):
    """A call into the solution did not return within its deadline; the process was killed."""

    outcome = "timeout"


class SolutionCrashed(SolutionFailure):
    """The solution process died (segfault, os._exit, killed for memory) during a call."""

    outcome = "crashed"


class SolutionImportError(SolutionFailure):
    """The student's module could not be imported; no check of the exercise can run."""

    outcome = "error"

    def __init__(self, message: str, traceback: str = ""):
        self.message = message
        self.traceback = traceback
        super().__init__(message)
