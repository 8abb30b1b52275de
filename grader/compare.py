"""Comparisons whose failure tells the student exactly what is wrong.

Every failure names what was compared and says, as it applies: the type, shape or dtype
mismatch; NaN/Inf where finite values were expected; the max abs and rel error; the index,
value and expected value of the worst element; the tolerance used; and, when the output
equals what a known mistake produces for this call and for every comparison the check
passed before, that mistake by name. When none is named, `grader.diagnose` adds one
observed sentence on the shape of the error, if a simple relation fits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

_NOTHING = object()  # no expected value: the verdict was not a comparison


class CheckFailure(AssertionError):
    """A check's verdict: the student's result is wrong. Its message is shown as is."""

    def __init__(self, message: str, mistake: str = ""):
        super().__init__(message)
        self.mistake = mistake


def _type_name(x: Any) -> str:
    from grader.remote import RemoteObject

    if isinstance(x, RemoteObject):
        return f"a {x._grade_type} object (not data)"
    if isinstance(x, torch.Tensor):
        return "a torch.Tensor"
    if isinstance(x, np.ndarray):
        return "a numpy.ndarray"
    return f"a {type(x).__module__}.{type(x).__qualname__}".replace("a builtins.", "a ")


def _index(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, tuple(shape))) if len(shape) else ()


def _fmt(v: float) -> str:
    return f"{v:.7g}"


def _fmt_pair(a: float, e: float) -> tuple[str, str]:
    """`a` and `e` with the fewest significant digits (7 to 17) that tell them apart.

    7 digits suit most mismatches; a float64 result off by a float32 rounding (1e-8
    relative) needs 9 or 10, and 17 tell any two distinct float64 values apart.
    """
    for digits in range(7, 18):
        shown = _significant(a, digits), _significant(e, digits)
        if shown[0] != shown[1]:
            break
    return shown


def _significant(v: float, digits: int) -> str:
    """`v` to `digits` significant digits, or fewer when they already give `v` exactly
    (0.1, not 0.10000000000000001)."""
    for k in range(1, digits):
        short = f"{v:.{k}g}"
        if float(short) == v:
            return short
    return f"{v:.{digits}g}"


class Mistakes:
    """What each known mistake (mutant) of the exercise returns for the same call.

    Evaluated only when a comparison fails, in the judge, on trusted mutant code. A mistake
    is named only when it explains everything the check compared: its output for the failing
    call equals the student's, and so do its outputs for every comparison the check passed
    before (kept by `grader.recording`).
    """

    def __init__(
        self,
        modules: dict[str, tuple[str, Any]] | Callable[[], dict[str, tuple[str, Any]]],
        call: Callable[[Any], Any],
    ):
        # name -> (misconception, module), or what returns it: the mutants are then built
        # (mutated and imported) only when a failure asks what they give
        self._modules = modules
        self.call = call

    def modules(self) -> dict[str, tuple[str, Any]]:
        return self._modules() if callable(self._modules) else self._modules

    def output(self, module: Any) -> tuple[bool, Any]:
        """(True, what the known mistake `module` gives for this call), or (False, None) if it
        raises; plugins call this rather than `call(module)`, which a released course's
        recorded mistakes do not support."""
        return _run_mutant(self.call, module)

    def outputs(self) -> list[tuple[str, str, Any]]:
        out = []
        for name, (misconception, module) in self.modules().items():
            ok, value = _run_mutant(self.call, module)
            if ok:
                out.append((name, misconception, value))
        return out

    def matching(self, actual: Any, atol: float, rtol: float, check_dtype: bool) -> list[tuple[str, str]]:
        """(name, misconception) of every known mistake that gives `actual` for this call and
        is accepted by every verdict the check passed before."""
        found = []
        for name, (misconception, module) in self.modules().items():
            ok, value = _run_mutant(self.call, module)
            if ok and _same(actual, value, atol, rtol, check_dtype) and self.consistent(module):
                found.append((name, misconception))
        return found

    def consistent(self, module: Any) -> bool:
        """Whether every verdict this check passed before accepts what the known mistake
        `module` gives for the same call (kept by `grader.recording`)."""
        from grader import recording

        recorder = recording.current()
        for earlier in list(recorder.compared) if recorder is not None else []:
            ok, value = _run_mutant(earlier.call, module)
            if not ok or not earlier.accepts(value):
                return False
        return True


class MutantOutcome:
    """A known mistake that answers for itself what a call gives (`outcome(call)` -> (ok,
    value)) instead of being called: a released course's recorded mistakes, and the live ones
    whose answers `grade release` records (`grader.release`)."""

    def outcome(self, call: Callable[[Any], Any]) -> tuple[bool, Any]:
        raise NotImplementedError


def _run_mutant(call: Callable[[Any], Any], module: Any) -> tuple[bool, Any]:
    if isinstance(module, MutantOutcome):
        return module.outcome(call)
    return run_mutant(call, module)


def run_mutant(call: Callable[[Any], Any], module: Any) -> tuple[bool, Any]:
    """(True, what `call(module)` returns), or (False, None) if it raises.

    The known mistake runs with the global random state (torch's, numpy's, Python's) seeded
    to a fixed value, and the judge's is put back afterwards: what a mistake that draws from
    the global state gives depends on the call alone, not on which mistakes ran before it (a
    released course replays it), and diagnosing a failure never moves the numbers the rest
    of the check, or a solution graded in this process, draws."""
    import random

    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        torch.manual_seed(MUTANT_SEED)
        np.random.seed(MUTANT_SEED)
        random.seed(MUTANT_SEED)
        return _call_mutant(call, module)
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


MUTANT_SEED = 20240101


def _call_mutant(call: Callable[[Any], Any], module: Any) -> tuple[bool, Any]:
    try:
        with warnings.catch_warnings():  # a mistake's overflow warnings are expected
            warnings.simplefilter("ignore")
            return True, call(module)
    except Exception:  # a mutant that raises on this input simply doesn't match
        return False, None


def _same(actual: Any, output: Any, atol: float, rtol: float, check_dtype: bool) -> bool:
    try:
        if atol == 0 and rtol == 0:
            return _equal_problem(actual, output) is None
        return _value_problem(actual, output, atol, rtol, check_dtype) is None
    except TypeError:  # the mutant returned something not comparable
        return False


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(x)


def _value_problem(actual: Any, expected: Any, atol: float, rtol: float, check_dtype: bool) -> str | None:
    """Why `actual` is not close to `expected`, or None if it is. `expected` is trusted."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return f"expected a {type(expected).__name__} of {len(expected)} items, got {_type_name(actual)}"
        if len(actual) != len(expected):
            return f"expected {len(expected)} items, got {len(actual)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            p = _value_problem(a, e, atol, rtol, check_dtype)
            if p:
                return f"item [{i}]: {p}"
        return None
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if isinstance(actual, (torch.Tensor, np.ndarray)):
            if math.prod(actual.shape) != 1:
                return f"expected a single number, got {_type_name(actual)} of shape {tuple(actual.shape)}"
            actual = float(actual.reshape(-1)[0])
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return f"expected a number, got {_type_name(actual)}"
        # float64: Python numbers are float64, and rounding both to float32 first would make
        # two values one float64 ulp apart differ by a float32 ulp (6e-8 relative).
        expected_t = torch.tensor([float(expected)], dtype=torch.float64)
        actual_t = torch.tensor([float(actual)], dtype=torch.float64)
        return _tensor_problem(actual_t, expected_t, atol, rtol, scalar=True)
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            return f"expected a torch.Tensor, got {_type_name(actual)}"
    elif isinstance(expected, np.ndarray):
        if not isinstance(actual, np.ndarray):
            return f"expected a numpy.ndarray, got {_type_name(actual)}"
    else:
        raise TypeError(f"assert_close cannot compare {type(expected)!r}")
    if tuple(actual.shape) != tuple(expected.shape):
        return f"shape mismatch: expected {tuple(expected.shape)}, got {tuple(actual.shape)}"
    if check_dtype and actual.dtype != expected.dtype:
        return f"dtype mismatch: expected {expected.dtype}, got {actual.dtype}"
    return _tensor_problem(_as_tensor(actual), _as_tensor(expected), atol, rtol)


def _tensor_problem(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float, scalar: bool = False) -> str | None:
    shape = tuple(e.shape)
    if a.is_complex() or e.is_complex():
        a, e = torch.view_as_real(a.to(torch.complex128)), torch.view_as_real(e.to(torch.complex128))
    a = a.to(torch.float64).reshape(-1)
    e = e.to(torch.float64).reshape(-1)

    def where(i: int) -> str:
        return "" if scalar else f" at index {_index(i, shape)}"

    tol = f"(atol={atol:g}, rtol={rtol:g})"
    for kind, bad_a, bad_e in (
        ("NaN", torch.isnan(a), torch.isnan(e)),
        ("Inf", torch.isinf(a), torch.isinf(e)),
    ):
        unexpected = bad_a & ~bad_e
        if unexpected.any():
            n = int(unexpected.sum())
            first = int(unexpected.nonzero()[0])
            return (
                f"{n} {kind} value{'s' if n > 1 else ''} where finite values were expected"
                f" (first{where(first)}: expected {_fmt(float(e[first]))})"
            )
        missing = bad_e & ~bad_a
        if missing.any():
            first = int(missing.nonzero()[0])
            return f"expected {kind}{where(first)}, got {_fmt(float(a[first]))}"
    # inf - (-inf) is inf, within atol + rtol * inf: an infinity of the wrong sign must be caught here.
    flipped = torch.isinf(a) & torch.isinf(e) & (a != e)
    if flipped.any():
        first = int(flipped.nonzero()[0])
        return f"expected {_fmt(float(e[first]))}{where(first)}, got {_fmt(float(a[first]))}"
    both_special = (torch.isnan(a) & torch.isnan(e)) | (torch.isinf(a) & torch.isinf(e))
    diff = torch.where(both_special, torch.zeros_like(a), (a - e).abs())
    allowed = atol + rtol * e.abs()
    excess = torch.where(both_special, torch.full_like(a, -math.inf), diff - allowed)
    if a.numel() == 0 or not (excess > 0).any():
        return None
    worst = int(excess.argmax())
    rel = torch.where(e == 0, torch.where(diff == 0, 0.0, math.inf), diff / e.abs())
    n_bad = int((excess > 0).sum())
    head = "" if scalar else f"{n_bad} of {a.numel()} values outside the tolerance {tol}; "
    got, wanted = _fmt_pair(float(a[worst]), float(e[worst]))
    return (
        f"{head}worst{where(worst)}: got {got}, expected {wanted}"
        f" (abs error {float(diff[worst]):.2e}, rel error {float(rel[worst]):.2e}"
        + ("" if not scalar else f", tolerance {tol}")
        + f"); max abs error {float(diff.max()):.2e}"
    )


def assert_close(
    actual: Any,
    expected: Any,
    *,
    atol: float,
    rtol: float,
    name: str = "output",
    mistakes: Mistakes | None = None,
    check_dtype: bool = True,
) -> None:
    """Fail unless `actual` matches `expected` elementwise: |a - e| <= atol + rtol * |e|.

    `expected` may be a tensor, an array, a number, or a list/tuple of them; `actual` must
    have the same type, shape and (unless `check_dtype=False`) dtype. NaN matches NaN and
    an infinity matches the same infinity.
    """
    problem = _value_problem(actual, expected, atol, rtol, check_dtype)
    if problem is None:
        _passed(mistakes, actual, atol, rtol, check_dtype)
        return
    _fail(f"{name}: {problem}", actual, mistakes, atol, rtol, check_dtype, expected)


def assert_equal(actual: Any, expected: Any, *, name: str = "output", mistakes: Mistakes | None = None) -> None:
    """Fail unless `actual` equals `expected` exactly (integers, codes, ids, strings, structure)."""
    problem = _equal_problem(actual, expected)
    if problem is None:
        _passed(mistakes, actual, 0.0, 0.0, True)
        return
    _fail(f"{name}: {problem}", actual, mistakes, 0.0, 0.0, True, expected)


def _passed(mistakes: Mistakes | None, actual: Any, atol: float, rtol: float, check_dtype: bool) -> None:
    """Keep a passed comparison for the check's later failures: a known mistake is named
    only if it also gives what the student gave here."""
    if mistakes is not None:
        from grader import recording

        recording.compared(mistakes.call, lambda output: _same(actual, output, atol, rtol, check_dtype))


def _equal_problem(actual: Any, expected: Any) -> str | None:
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        p = _value_problem(actual, expected, 0.0, 0.0, True)
        return p.replace(" outside the tolerance (atol=0, rtol=0)", " differ") if p else None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return f"expected a {type(expected).__name__} of {len(expected)} items, got {_type_name(actual)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            p = _equal_problem(a, e)
            if p:
                return f"item [{i}]: {p}"
        if len(actual) != len(expected):
            return f"expected {len(expected)} items, got {len(actual)}"
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"expected a dict, got {_type_name(actual)}"
        if set(actual) != set(expected):
            missing = sorted(map(str, set(expected) - set(actual)))
            extra = sorted(map(str, set(actual) - set(expected)))
            return f"keys differ: missing {missing}, unexpected {extra}"
        for k in expected:
            p = _equal_problem(actual[k], expected[k])
            if p:
                return f"[{k!r}]: {p}"
        return None
    if type(actual) is not type(expected) and not (
        isinstance(expected, int) and isinstance(actual, int) and not isinstance(actual, bool)
    ):
        return f"expected {_type_name(expected)} {expected!r}, got {_type_name(actual)}"
    if actual != expected:
        return f"expected {expected!r}, got {actual!r}"
    return None


def _fail(message: str, actual: Any, mistakes: Mistakes | None, atol: float, rtol: float, check_dtype: bool,
          expected: Any = _NOTHING) -> NoReturn:
    if mistakes is not None:
        named = mistakes.matching(actual, atol, rtol, check_dtype)
        if len(named) == 1:
            raise CheckFailure(f"{message}\nThis is exactly what a known mistake gives: {named[0][1]}",
                               mistake=named[0][0])
        if named:
            listed = "".join(f"\n  - {misconception}" for _, misconception in named)
            raise CheckFailure(f"{message}\nThis is exactly what each of these known mistakes gives, on everything this"
                               f" check compared:{listed}", mistake=", ".join(name for name, _ in named))
    if expected is not _NOTHING:
        sentence = _diagnosis(actual, expected, atol, rtol, check_dtype)
        if sentence:
            message += f"\nLooking closer: {sentence}."
    raise CheckFailure(message)


def _diagnosis(actual: Any, expected: Any, atol: float, rtol: float, check_dtype: bool) -> str | None:
    """The error-shape sentence for the first item of `actual` that differs from `expected`,
    with the inputs of the call that produced it and the check's other results."""
    from grader import diagnose, recording

    try:
        a, e, where = _first_difference(actual, expected, atol, rtol, check_dtype)
        recorder = recording.current()
        inputs: list[tuple[str, Any]] = []
        earlier: list[tuple[str, Any]] = []
        if recorder is not None:
            source = recorder.source_of(actual) or recorder.source_of(a)
            if source is None and recorder.calls:
                source = recorder.calls[-1]
            if source is not None:
                inputs = source.inputs()
                earlier = [(c.describe(), r) for c in recorder.calls if c is not source
                           and not _same_inputs(c, source) for r in c.leaves()]
        sentence = diagnose.diagnose(a, e, atol=atol, rtol=rtol, inputs=inputs, earlier=earlier)
    except Exception:  # a diagnosis is extra: it never costs the check its message
        return None
    if not sentence:
        return None
    return f"{where}{sentence}" if where else sentence


def _same_inputs(a: Any, b: Any) -> bool:
    try:
        return a.function == b.function and _equal_problem(list(a.args), list(b.args)) is None and \
            _equal_problem(dict(a.kwargs), dict(b.kwargs)) is None
    except Exception:
        return False


def _first_difference(actual: Any, expected: Any, atol: float, rtol: float, check_dtype: bool,
                      where: str = "") -> tuple[Any, Any, str]:
    """The innermost items of `actual` and `expected` where they first differ, and which."""
    from grader.diagnose import _atoms, _numbers

    if (_numbers(expected) and _numbers(actual)) or (_atoms(expected) and _atoms(actual)):  # described whole
        return actual, expected, where
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)) and len(actual) == len(expected):
        for i, (a, e) in enumerate(zip(actual, expected)):
            if not _same(a, e, atol, rtol, check_dtype):
                return _first_difference(a, e, atol, rtol, check_dtype, f"{where}item [{i}]: ")
    if isinstance(expected, dict) and isinstance(actual, dict) and set(actual) == set(expected):
        for k in expected:
            if not _same(actual[k], expected[k], atol, rtol, check_dtype):
                return _first_difference(actual[k], expected[k], atol, rtol, check_dtype, f"{where}[{k!r}]: ")
    return actual, expected, where


def fail(message: str, actual: Any = None, mistakes: Mistakes | None = None) -> NoReturn:
    """Fail with `message`, for verdicts that are not one comparison (rates, properties).

    Like assert_equal, names the known mistake whose output for the same call equals
    `actual` exactly, if there is one.
    """
    _fail(message, actual, mistakes, 0.0, 0.0, True)


def check(condition: bool, message: str) -> None:
    """Fail with `message` unless `condition`: for verdicts that are not comparisons."""
    if not condition:
        raise CheckFailure(message)


def raises(call: Callable[[], Any], exception: type[Exception] = ValueError) -> bool:
    """Whether `call()` raises `exception` (by type name across the process boundary).

    Works in both modes: in isolated mode the student's exception arrives as a
    SolutionError carrying its type name. A NotImplementedError propagates, so an untouched
    stub still counts as not started.
    """
    from grader.errors import SolutionError

    try:
        call()
    except SolutionError as e:
        if e.not_implemented:
            raise
        return e.exc_type == exception.__name__
    except NotImplementedError:
        raise
    except exception:
        return True
    except Exception:
        return False
    return False
