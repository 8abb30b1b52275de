"""What a numeric mismatch looks like: one observed sentence, when a simple shape fits it.

`diagnose(actual, expected, ...)` runs in the judge when a comparison fails and no known
mistake explains the output. Each diagnoser tests one exact relation between the student's
output and the expected one (a constant factor, an offset, permuted axes, a shift by one,
a prefix, a triangle, a mask...) within the comparison's tolerance, and only when it holds
everywhere does it say so, as an observation: "your output equals the expected one times
0.125 = 1/sqrt(64) (64: the size of axis 2 of `q`)". None fits: no sentence; a guess is
never presented as fact.

Some diagnosers need the call's inputs (`inputs`: (name, value) pairs) or the other results
of the check (`earlier`: (description, value) pairs); `grader.recording` provides both.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MAX_ELEMENTS = 1 << 24  # larger outputs are not diagnosed (the comparison has said enough)
IGNORE_INDEX = -100  # the label value that marks a position out of the loss
LARGE = 10.0  # an input magnitude from which overflow is plausible to point at


def _numbers(x: Any) -> bool:
    """A flat list or tuple of plain numbers (token ids, positions, losses)."""
    return (isinstance(x, (list, tuple)) and 2 <= len(x) <= MAX_ELEMENTS
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x))


def _tensor(x: Any) -> torch.Tensor | None:
    if _numbers(x):
        return torch.tensor([float(v) for v in x], dtype=torch.float64)
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            return None
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, bool):
        return None
    elif isinstance(x, (int, float)):
        x = torch.tensor(float(x), dtype=torch.float64)
    if not isinstance(x, torch.Tensor) or x.is_complex() or x.numel() > MAX_ELEMENTS:
        return None
    return x.detach().to(torch.float64)


def _torch_dtype(x: Any) -> torch.dtype | None:
    if isinstance(x, torch.Tensor):
        return x.dtype
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return torch.from_numpy(np.zeros(1, dtype=x.dtype)).dtype
    if isinstance(x, float):
        return torch.float64
    return None


def _axis(k: int, ndim: int) -> str:
    return f"axis {k}" if ndim > 1 else "its only axis"


@dataclass
class _Case:
    a: torch.Tensor
    e: torch.Tensor
    atol: float
    rtol: float
    inputs: list[tuple[str, torch.Tensor]]
    raw_inputs: list[tuple[str, Any]]
    earlier: list[tuple[str, torch.Tensor]]
    expected_dtype: Any
    actual_dtype: Any
    scalar: bool

    def close(self, a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Elementwise: a within the tolerance of e (NaN matches NaN, an infinity itself)."""
        same = (a == e) | (torch.isnan(a) & torch.isnan(e))
        diff = (a - e).abs()
        return same | (torch.isfinite(diff) & (diff <= self.atol + self.rtol * e.abs()))

    def fits(self, a: torch.Tensor, e: torch.Tensor) -> bool:
        return a.shape == e.shape and bool(self.close(a, e).all())

    @property
    def wrong(self) -> torch.Tensor:
        return ~self.close(self.a, self.e)


def diagnose(
    actual: Any,
    expected: Any,
    *,
    atol: float,
    rtol: float,
    inputs: Sequence[tuple[str, Any]] = (),
    earlier: Sequence[tuple[str, Any]] = (),
) -> str | None:
    """One sentence describing how `actual` differs from `expected`, or None when no simple
    relation fits. Never raises."""
    try:
        return _diagnose(actual, expected, atol, rtol, inputs, earlier)
    except Exception:  # diagnosis must never cost the check its message
        return None


def _diagnose(actual: Any, expected: Any, atol: float, rtol: float, inputs: Sequence[tuple[str, Any]],
              earlier: Sequence[tuple[str, Any]]) -> str | None:
    a, e = _tensor(actual), _tensor(expected)
    if a is None or e is None:
        return _sequence(actual, expected) if _atoms(actual) and _atoms(expected) else None
    numeric = _numeric(a, e, actual, expected, atol, rtol, inputs, earlier)
    if numeric is None and _atoms(actual) and _atoms(expected):
        return _sequence(actual, expected)
    return numeric


def _atoms(x: Any) -> bool:
    """A list or tuple of plain, hashable items: pieces of text, tokens, ids, merges."""
    def atom(v: Any) -> bool:
        return isinstance(v, (str, bytes, int, float)) or (isinstance(v, tuple) and len(v) <= 4 and all(map(atom, v)))

    return isinstance(x, (list, tuple)) and len(x) <= 100_000 and all(map(atom, x))


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _sequence(actual: Sequence[Any], expected: Sequence[Any]) -> str | None:
    """How two lists of tokens, pieces or ids relate: the same items in another order, items
    missing or added, or pieces that join to the same text split another way."""
    a, e = list(actual), list(expected)
    if a == e:
        return None
    if len(a) == len(e) and sorted(map(repr, a)) == sorted(map(repr, e)):
        first = next(i for i, (x, y) in enumerate(zip(a, e)) if x != y)
        return (f"your output holds exactly the expected items in another order (the first out of place is at"
                f" index {first}: {_show(a[first])}, where {_show(e[first])} is expected)")
    for longer, shorter, what in ((e, a, "without"), (a, e, "with")):
        if len(longer) > len(shorter) and _subsequence(shorter, longer):
            extra = _extra(shorter, longer)
            items = ", ".join(f"{_show(longer[i])} at index {i}" for i in extra[:3]) + (", ..." if len(extra) > 3 else "")
            n = len(extra)
            kind = "missing" if what == "without" else "extra"
            return (f"your output is the expected list {what} {n} item{'s' if n > 1 else ''} ({kind}: {items}),"
                    " everything else in order")
    for join in (_join_text, _join_bytes):
        ja, je = join(a), join(e)
        if ja is not None and je is not None and ja == je:
            return (f"your pieces join to exactly the expected text: only where it is split differs ({len(a)}"
                    f" piece{'s' if len(a) != 1 else ''} where {len(e)} {'are' if len(e) != 1 else 'is'} expected)")
    return None


def _subsequence(short: list[Any], long: list[Any]) -> bool:
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


def _extra(short: list[Any], long: list[Any]) -> list[int]:
    """The indices of `long` left over when `short` is matched in it greedily."""
    out, j = [], 0
    for i, y in enumerate(long):
        if j < len(short) and short[j] == y:
            j += 1
        else:
            out.append(i)
    return out


def _join_text(items: list[Any]) -> str | None:
    return "".join(items) if items and all(isinstance(v, str) for v in items) else None


def _join_bytes(items: list[Any]) -> bytes | None:
    return b"".join(items) if items and all(isinstance(v, bytes) for v in items) else None


def _numeric(a: torch.Tensor, e: torch.Tensor, actual: Any, expected: Any, atol: float, rtol: float,
             inputs: Sequence[tuple[str, Any]], earlier: Sequence[tuple[str, Any]]) -> str | None:
    expected_dtype = _torch_dtype(expected)
    if atol == 0 and rtol == 0 and expected_dtype is not None and expected_dtype.is_floating_point:
        # an exact comparison of floats: "fits" still allows a few ulps of the dtype
        eps = torch.finfo(expected_dtype).eps
        finite = e[torch.isfinite(e)]
        rtol, atol = 4 * eps, 4 * eps * (float(finite.abs().max()) if finite.numel() else 0.0)
    converted = [(n, t) for n, t in ((n, _tensor(v)) for n, v in inputs) if t is not None]
    earlier_t = [(n, t) for n, t in ((n, _tensor(v)) for n, v in earlier) if t is not None]
    case = _Case(a, e, atol, rtol, converted, list(inputs), earlier_t, expected_dtype, _torch_dtype(actual),
                 scalar=e.dim() == 0)
    if a.shape == e.shape and case.fits(a, e):
        return None  # the values agree: what differs is the type or dtype, which the message says
    for diagnoser in DIAGNOSERS:
        try:
            sentence = diagnoser(case)
        except Exception:  # one diagnoser's blind spot must not silence the others
            continue
        if sentence:
            return sentence
    return None


# --- the diagnosers, most specific first --------------------------------------------------


def _constant(c: _Case) -> str | None:
    if c.scalar or c.a.numel() < 2 or not torch.isfinite(c.a).all():
        return None
    first = c.a.reshape(-1)[0]
    if not (c.a == first).all():
        return None
    if float(first) == 0:
        return "every value of your output is 0"
    return f"every value of your output is {float(first):.6g}"


def _complement(c: _Case) -> str | None:
    """A 0/1 (or boolean) output that is the expected one inverted."""
    if c.a.shape != c.e.shape or c.a.numel() < 2:
        return None
    binary = ((c.e == 0) | (c.e == 1)).all() and ((c.a == 0) | (c.a == 1)).all()
    if not binary or not torch.equal(c.a, 1 - c.e) or (c.e == c.e.reshape(-1)[0]).all():
        return None
    word = ("True", "False") if c.expected_dtype == torch.bool else ("1", "0")
    return (f"your output is the expected one inverted: {word[0]} exactly where the expected one is {word[1]},"
            " and the other way round")


def _finite_for_infinite(c: _Case) -> str | None:
    """-inf (or inf) expected, a large finite number given, everything else right."""
    if c.a.shape != c.e.shape:
        return None
    inf = torch.isinf(c.e)
    if not inf.any() or not torch.isfinite(c.a[inf]).all() or not bool(c.close(c.a, c.e)[~inf].all()):
        return None
    values = c.a[inf].unique()
    shown = f"{float(values[0]):.6g}" if values.numel() == 1 else f"finite values such as {float(values[0]):.6g}"
    signs = "-inf" if (c.e[inf] < 0).all() else ("inf" if (c.e[inf] > 0).all() else "an infinity")
    return (f"your output holds {shown} where the expected one is {signs} ({int(inf.sum())} entries), and matches"
            " everywhere else")


def _equals_input(c: _Case) -> str | None:
    for name, x in c.inputs:
        if x.shape == c.a.shape and (x.numel() > 1 or not c.scalar) and c.fits(c.a, x) and not c.fits(c.e, x):
            return f"your output equals the input `{name}`, unchanged"
    return None


def _equals_earlier(c: _Case) -> str | None:
    for description, r in c.earlier:
        if r.shape == c.a.shape and r.numel() > 1 and c.fits(c.a, r):
            return (f"your output equals what your code returned for an earlier call in this check, {description},"
                    " which had other inputs")
    return None


def _reshaped(c: _Case) -> str | None:
    if c.a.shape == c.e.shape or c.a.numel() != c.e.numel() or c.e.numel() < 2:
        return None
    shape_a, shape_e = tuple(c.a.shape), tuple(c.e.shape)
    if c.a.dim() <= 6:
        for perm in itertools.permutations(range(c.e.dim())):
            if tuple(shape_e[p] for p in perm) == shape_a and perm != tuple(range(c.e.dim())):
                if c.fits(c.a, c.e.permute(perm)):
                    return (f"your output holds the expected values with the axes in another order: it equals the"
                            f" expected one permuted as .permute{perm}, shape {shape_a} instead of {shape_e}")
    if c.fits(c.a.reshape(shape_e), c.e):
        return (f"your output holds the expected values in the expected order, with shape {shape_a}"
                f" instead of {shape_e}")
    return None


def _permuted_same_shape(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or c.a.dim() < 2 or c.a.dim() > 6:
        return None
    ident = tuple(range(c.a.dim()))
    for perm in itertools.permutations(ident):
        if perm == ident or tuple(c.e.shape[p] for p in perm) != tuple(c.e.shape):
            continue
        if c.fits(c.a, c.e.permute(perm)):
            swapped = [i for i in ident if perm[i] != i]
            if len(swapped) == 2:
                return (f"your output equals the expected one with axes {swapped[0]} and {swapped[1]} swapped"
                        f" (.transpose({swapped[0]}, {swapped[1]}))")
            return f"your output equals the expected one with its axes permuted as .permute{perm}"
    return None


def _overflow(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or c.a.dim() == 0:
        return None
    bad = ~torch.isfinite(c.a) & torch.isfinite(c.e)
    if not bad.any():
        return None
    for name, x in c.inputs:
        if not x.dtype.is_floating_point or x.dim() == 0:
            continue
        if tuple(x.shape[:c.a.dim()]) == tuple(c.a.shape):
            m = x.abs().reshape(*c.a.shape, -1).amax(-1)
        elif tuple(x.shape[:-1]) == tuple(c.a.shape[:-1]) and x.dim() == c.a.dim():
            m = x.abs().amax(-1, keepdim=True).expand(c.a.shape)
        else:
            continue
        rows_bad = bad.reshape(-1, c.a.shape[-1]).any(-1) if c.a.dim() > 0 else bad.reshape(1)
        m_rows = m.reshape(-1, c.a.shape[-1]).amax(-1)
        if rows_bad.all():
            good_max = None
        else:
            good_max = float(m_rows[~rows_bad].max())
        bad_min = float(m_rows[rows_bad].min())
        if bad_min < LARGE or (good_max is not None and bad_min < 2 * good_max):
            continue
        in_good_rows = ~rows_bad.reshape(-1, 1).expand(-1, c.a.shape[-1]).reshape(c.a.shape)
        if not bool(c.close(c.a, c.e)[in_good_rows].all()):
            continue
        n = int(bad.sum())
        kinds = "/".join(k for k, t in (("NaN", torch.isnan(c.a)), ("Inf", torch.isinf(c.a))) if (t & bad).any())
        rest = (f", and the rows where it stays within {good_max:.3g} are right" if good_max is not None else "")
        return (f"your output has {n} {kinds} value{'s' if n > 1 else ''} where the expected one is finite, all in"
                f" rows where `{name}` reaches {bad_min:.3g} or more in magnitude{rest}: that is how an overflow"
                " shows (exp() of a large number is inf in floating point)")
    return None


def _float32_rounding(c: _Case) -> str | None:
    if c.expected_dtype != torch.float64 or c.a.shape != c.e.shape:
        return None
    if not (torch.isfinite(c.a) == torch.isfinite(c.e)).all():
        return None
    finite = torch.isfinite(c.e)
    a, e = c.a[finite], c.e[finite]
    if a.numel() == 0:
        return None
    err = float((a - e).abs().max())
    scale = float(e.abs().max())
    # every value a float32 number (computed in float32, then cast back), and each within a
    # few float32 roundings of its expected value
    representable = torch.equal(a.float().double(), a)
    near = bool(((a - e).abs() <= 8 * torch.finfo(torch.float32).eps * e.abs() + 1e-30).all())
    if err == 0 or not representable or not near:
        return None
    return (f"every value of your output is a float32 number (it survives a round trip through float32 unchanged)"
            f" within float32 rounding of the expected one (largest error {err:.2g}, on values up to {scale:.3g}):"
            " your computation runs in float32 somewhere, where float64 was asked")


def _named_constants(c: _Case) -> list[tuple[float, str]]:
    """Factors worth naming for the shapes at hand: 2, 1/2, -1, and d, 1/d, sqrt(d),
    1/sqrt(d), d/(d-1), (d-1)/d for every size d of the output's and inputs' axes and every
    integer input; each with how to read it ("1/sqrt(64) (64: the size of axis 2 of `q`)")."""
    out: list[tuple[float, str]] = [(2.0, "2"), (0.5, "1/2"), (-1.0, "-1"), (-2.0, "-2"), (-0.5, "-1/2")]
    sizes: dict[int, str] = {}
    for k, d in enumerate(c.e.shape):
        sizes.setdefault(int(d), f"the size of {_axis(k, c.e.dim())} of the output")
    for name, x in c.inputs:
        for k, d in enumerate(x.shape):
            sizes.setdefault(int(d), f"the size of {_axis(k, x.dim())} of `{name}`")
    for name, v in c.raw_inputs:
        if isinstance(v, int) and not isinstance(v, bool):
            sizes.setdefault(v, f"`{name}`")
    for d, where in sizes.items():
        if d < 2:
            continue
        for value, text in ((d, f"{d}"), (1 / d, f"1/{d}"), (math.sqrt(d), f"sqrt({d})"), (1 / math.sqrt(d), f"1/sqrt({d})"),
                            (d / (d - 1), f"{d}/{d - 1}"), ((d - 1) / d, f"{d - 1}/{d}")):
            out.append((value, f"{text} ({d}: {where})"))
    return out


def _name_factor(c: _Case, factor: float) -> tuple[float, str] | None:
    """The named constants equal to `factor`: its value and every name it has here (a
    factor of 1/8 may be 1/sqrt(64) as well)."""
    names = [(value, text) for value, text in _named_constants(c) if abs(factor - value) <= 1e-6 * abs(value)]
    if not names:
        return None
    if " (" not in names[0][1]:
        return names[0]  # 2, 1/2, -1: no size needed to read them
    shown = f"{names[0][0]:.6g}"
    texts = []
    for _, text in names:
        # "6 (6: the size of axis 0 ...)" reads "6, the size of axis 0 ..."
        formula, _, where = text.partition(" (")
        texts.append(f"{formula} ({where}" if formula != shown else f"{shown}, {where[len(shown) + 2:-1]}" if where
                     else shown)
    return names[0][0], " or ".join(list(dict.fromkeys(texts))[:3])


def _scale(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or not torch.isfinite(c.e).all() or not torch.isfinite(c.a).all():
        return None
    ee = float((c.e * c.e).sum())
    if ee == 0:
        return None
    factor = float((c.a * c.e).sum()) / ee
    if factor == 0 or abs(factor - 1) < 1e-3:
        return None
    found = _name_factor(c, factor)
    if found is not None:
        value, named = found
        if c.fits(c.a, value * c.e):
            shown = f"{value:.6g}"
            if named == shown:
                return f"your output equals the expected one times {shown}"
            if named.startswith(f"{shown}, "):
                return f"your output equals the expected one times {named}"
            return f"your output equals the expected one times {shown} = {named}"
    if c.scalar or c.e.numel() < 3 or (c.e == c.e.reshape(-1)[0]).all():
        return None  # any single number is some multiple of another
    if c.fits(c.a, factor * c.e):
        return f"your output equals the expected one times {factor:.6g}, the same factor everywhere"
    return None


def _offset(c: _Case) -> str | None:
    if c.scalar or c.a.shape != c.e.shape or c.e.numel() < 3:
        return None
    if not (torch.isfinite(c.e).all() and torch.isfinite(c.a).all()):
        return None
    shift = float((c.a - c.e).mean())
    if c.fits(c.a, c.e + shift):
        return f"your output equals the expected one plus {shift:.6g}, the same amount everywhere"
    return None


def _shift(c: _Case) -> str | None:
    if c.a.shape != c.e.shape:
        return None
    for k, n in enumerate(c.e.shape):
        if n < 3:
            continue
        later = c.fits(c.a.narrow(k, 1, n - 1), c.e.narrow(k, 0, n - 1))
        earlier = c.fits(c.a.narrow(k, 0, n - 1), c.e.narrow(k, 1, n - 1))
        if later and not earlier:
            return (f"your output is the expected one moved one position later along {_axis(k, c.e.dim())}:"
                    f" your position t holds the expected value of position t-1")
        if earlier and not later:
            return (f"your output is the expected one moved one position earlier along {_axis(k, c.e.dim())}:"
                    f" your position t holds the expected value of position t+1")
    return None


def _normalised_axis(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or c.e.dim() < 2 or (c.e < -c.atol).any() or (c.a < -c.atol).any():
        return None

    def sums_to_one(t: torch.Tensor, k: int) -> bool:
        s = t.sum(k)
        return bool(((s - 1).abs() <= max(1e-6, c.atol * t.shape[k] + c.rtol)).all())

    axes_e = [k for k in range(c.e.dim()) if c.e.shape[k] > 1 and sums_to_one(c.e, k)]
    axes_a = [k for k in range(c.a.dim()) if c.a.shape[k] > 1 and sums_to_one(c.a, k)]
    if axes_e and axes_a and not set(axes_e) & set(axes_a):
        ka, ke = axes_a[0], axes_e[0]
        return (f"your output sums to 1 along axis {ka}, while the expected one sums to 1 along axis {ke}:"
                " the normalisation runs over another axis")
    return None


def _mask_inputs(c: _Case) -> list[tuple[str, torch.Tensor, str, str]]:
    """Inputs that mark positions, aligned to the output: boolean or 0/1 masks, and integer
    labels holding the ignore index; each with how to say its 0 and its 1."""
    out = []
    for name, raw in c.raw_inputs:
        t = _tensor(raw)
        if t is None or t.dim() == 0:
            continue
        dtype = _torch_dtype(raw)
        is_bool = dtype == torch.bool
        if is_bool or ("mask" in name.lower() and bool(((t == 0) | (t == 1)).all())):
            aligned = _align(t, tuple(c.a.shape))
            if aligned is not None:
                out.append((name, aligned, "False" if is_bool else "0", "True" if is_bool else "1"))
        elif dtype is not None and not dtype.is_floating_point and bool((t == IGNORE_INDEX).any()):
            aligned = _align((t != IGNORE_INDEX).double(), tuple(c.a.shape))
            if aligned is not None:
                out.append((name, aligned, f"{IGNORE_INDEX}, the ignored positions", f"not {IGNORE_INDEX}"))
    return out


def _align(mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """`mask` broadcast to `shape`: as is, or with its axes taken as the leading ones."""
    for candidate in (mask, mask.reshape(*mask.shape, *([1] * max(0, len(shape) - mask.dim())))):
        try:
            return torch.broadcast_to(candidate, shape)
        except RuntimeError:
            continue
    return None


def _masked(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or c.a.dim() == 0:
        return None
    wrong = c.wrong
    for name, mask, zero, one in _mask_inputs(c):
        for value, where in ((0.0, zero), (1.0, one)):
            at = mask == value
            if at.all() or not at.any():
                continue
            if bool(wrong[~at].any()) or not wrong[at].any():
                continue
            return (f"your output differs from the expected one only where `{name}` is {where}: {int(wrong.sum())}"
                    f" of the {int(at.sum())} entries there differ, and everything else matches")
    return None


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return f"{int(v)}" if v == int(v) and abs(v) < 1e15 else f"{v:.6g}"


def _at_input_value(c: _Case) -> str | None:
    """The mismatches exactly where one input holds one value (x == 0 for a ReLU's kink, a pad
    id), and nowhere else."""
    if c.a.shape != c.e.shape or c.a.dim() == 0:
        return None
    wrong = c.wrong
    if int(wrong.sum()) < 2 or bool(wrong.all()):
        return None
    for name, x in c.inputs:
        aligned = _align(x, tuple(c.a.shape))
        if aligned is None or x.dim() == 0:
            continue
        values = aligned[wrong].unique()
        if values.numel() != 1 or torch.isnan(values).any():
            continue
        at = aligned == values[0]
        if torch.equal(at, wrong):
            return (f"your output differs from the expected one exactly where `{name}` is {_fmt(float(values[0]))}"
                    f" ({int(wrong.sum())} entries), and matches everywhere else")
    return None


def _one_value(kind: str) -> Callable[[_Case], str | None]:
    """Every mismatch expects one value and holds one value ("both": -100 expected where a pad
    id is given, NaN where 0 is expected), or only expects one ("expected"), or only holds
    one ("actual")."""
    def diagnoser(c: _Case) -> str | None:
        if c.a.shape != c.e.shape or c.a.dim() == 0:
            return None
        wrong = c.wrong
        n = int(wrong.sum())
        if n < 2:
            return None
        e_w, a_w = c.e[wrong], c.a[wrong]
        e_nan, a_nan = bool(torch.isnan(e_w).all()), bool(torch.isnan(a_w).all())
        e_one = e_nan or e_w.unique().numel() == 1
        a_one = a_nan or a_w.unique().numel() == 1
        e_val = math.nan if e_nan else float(e_w[0])
        a_val = math.nan if a_nan else float(a_w[0])
        if kind == "both" and e_one and a_one:
            return (f"everywhere your output differs from the expected one ({n} entries), the expected value is"
                    f" {_fmt(e_val)} and yours is {_fmt(a_val)}; everything else matches")
        if kind == "expected" and e_one and not a_one:
            same_e = torch.isnan(c.e) if e_nan else c.e == e_val
            if not bool(same_e.all()):
                return (f"your output differs from the expected one only at entries whose expected value is"
                        f" {_fmt(e_val)} ({n} of the {int(same_e.sum())} such entries), and matches everywhere else")
        if kind == "actual" and a_one and not e_one and n < c.a.numel():
            return f"everywhere your output differs from the expected one ({n} entries), yours holds {_fmt(a_val)}"
        return None

    return diagnoser


def _slices_permuted(c: _Case) -> str | None:
    """The expected slices along one axis, in another order (heads repeated in another
    layout, columns interleaved where halves were asked)."""
    if c.a.shape != c.e.shape or c.a.dim() == 0:
        return None
    for k, n in enumerate(c.e.shape):
        if n < 2 or n > 256:
            continue
        a_s = c.a.movedim(k, 0).reshape(n, -1)
        e_s = c.e.movedim(k, 0).reshape(n, -1)
        mapping: list[int] = []
        for i in range(n):
            match = next((j for j in range(n) if j not in mapping and bool(c.close(a_s[i], e_s[j]).all())), None)
            if match is None:
                break
            mapping.append(match)
        if len(mapping) != n or mapping == list(range(n)):
            continue
        moved = [(i, j) for i, j in enumerate(mapping) if i != j]
        shown = ", ".join(f"your {i} is the expected {j}" for i, j in moved[:4]) + (", ..." if len(moved) > 4 else "")
        what = "values" if c.e.dim() == 1 else f"slices along axis {k}"
        return f"your output holds the expected {what} in another order ({shown})"
    return None


def _triangle(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or c.a.dim() < 2 or c.a.shape[-2] < 2 or c.a.shape[-1] < 3:
        return None
    rows, cols = c.a.shape[-2], c.a.shape[-1]
    wrong = c.wrong.reshape(-1, rows, cols).any(0)
    i = torch.arange(rows).reshape(-1, 1)
    j = torch.arange(cols).reshape(1, -1)
    d = j - i
    for o in range(-rows + 1, cols):
        if torch.equal(wrong, d == o):
            where = ("on the diagonal (the entries [i, i], where a position meets itself: what a mask one diagonal"
                     " off changes)" if o == 0 else f"on the diagonal j - i = {o}")
            return (f"your output differs from the expected one exactly {where} of its last two axes, and matches"
                    " everywhere else")
    for o in range(-rows + 1, cols - 1):
        for above in (True, False):
            region = d > o if above else d < o
            if region.all() or not region.any() or not torch.equal(wrong, region):
                continue
            if above:
                note = {0: " (above the diagonal: the future positions a causal mask hides)",
                        -1: " (on and above the diagonal: the causal mask's j > i and the diagonal, one too many)",
                        1: " (from the second diagonal above on: the causal mask's j > i less its first diagonal,"
                           " one too few)"}.get(o, "")
            else:
                note = {0: " (below the diagonal: the mask seems to run the other way)"}.get(o, "")
            relation = ">" if above else "<"
            return (f"your output differs from the expected one exactly at the entries [i, j] of its last two axes"
                    f" with j - i {relation} {o}{note}, and matches everywhere else")
    return None


def _prefix(c: _Case) -> str | None:
    if c.a.shape != c.e.shape or c.a.dim() == 0:
        return None
    wrong = c.wrong
    if int(wrong.sum()) <= 1:
        return None  # one wrong value: the message already says where
    for k, n in enumerate(c.e.shape):
        if n < 2:
            continue
        bad = wrong.movedim(k, 0).reshape(n, -1).any(1)
        first_bad = int(bad.nonzero()[0])
        last_bad = int(bad.nonzero()[-1])
        where = _axis(k, c.e.dim())
        # a run of one matching position says little (the first query of causal attention
        # sees one key whatever the mistake): two or more are needed
        if first_bad == last_bad and n >= 3:
            return f"your output differs from the expected one only at position {first_bad} of {where}"
        if bad[first_bad:].all() and first_bad >= 2:
            return (f"your output matches the expected one at {_positions(0, first_bad - 1)} of {where} and differs"
                    f" at every position from {first_bad} on")
        if bad[:last_bad + 1].all() and last_bad <= n - 3:
            return (f"your output differs from the expected one at {_positions(0, last_bad)} of {where} and matches"
                    f" from position {last_bad + 1} on")
    return None


def _positions(first: int, last: int) -> str:
    return f"position {first}" if first == last else f"positions {first}..{last}"


def _per_axis(kind: str) -> Callable[[_Case], str | None]:
    def diagnoser(c: _Case) -> str | None:
        if c.a.shape != c.e.shape or c.a.dim() < 2:
            return None
        if not (torch.isfinite(c.e).all() and torch.isfinite(c.a).all()):
            return None
        for k, n in enumerate(c.e.shape):
            if n < 3 or c.e.numel() // n < 2:
                continue
            if kind == "offset":
                amount = (c.a - c.e).mean(k, keepdim=True)
                fitted = c.e + amount
            else:
                ee = (c.e * c.e).sum(k, keepdim=True)
                if (ee == 0).any():
                    continue
                amount = (c.a * c.e).sum(k, keepdim=True) / ee
                fitted = c.e * amount
            if c.fits(c.a, fitted) and not c.fits(amount, amount.reshape(-1)[0].expand_as(amount)):
                what = "plus an amount" if kind == "offset" else "times a factor"
                return (f"your output equals the expected one {what} that is the same all along"
                        f" {_axis(k, c.e.dim())} and changes across the other axes")
        return None

    return diagnoser


def _some_positions(c: _Case) -> str | None:
    """The mismatches confined to a few positions of one axis (a few rows of a batch)."""
    if c.a.shape != c.e.shape or c.a.dim() == 0:
        return None
    wrong = c.wrong
    if int(wrong.sum()) <= 1:
        return None
    best = None
    for k, n in enumerate(c.e.shape):
        if n < 4:
            continue
        bad = wrong.movedim(k, 0).reshape(n, -1).any(1)
        count = int(bad.sum())
        if 2 <= count <= n // 2 and (best is None or count / n < best[0]):
            best = (count / n, k, bad.nonzero().reshape(-1).tolist(), n)
    if best is None:
        return None
    _, k, positions, n = best
    shown = ", ".join(map(str, positions[:8])) + (", ..." if len(positions) > 8 else "")
    return (f"your output differs from the expected one only at positions {shown} of {_axis(k, c.e.dim())}"
            f" ({len(positions)} of {n}), and matches at the others")


def _near(c: _Case) -> str | None:
    """Close everywhere, just not within the tolerance: a small, spread difference."""
    if c.a.shape != c.e.shape or c.e.numel() < 2 or c.expected_dtype is None or not c.expected_dtype.is_floating_point:
        return None
    if not (torch.isfinite(c.a).all() and torch.isfinite(c.e).all()):
        return None
    scale = float(c.e.abs().max())
    err = float((c.a - c.e).abs().max())
    if scale == 0 or err > 1e-3 * scale:
        return None
    return (f"your output is within {err / scale:.1e} of the largest expected value ({scale:.3g}) everywhere, yet"
            f" outside the tolerance: the largest difference is {err:.2g}, a small difference spread over the output")


DIAGNOSERS: list[Callable[[_Case], str | None]] = [
    _constant,
    _complement,
    _finite_for_infinite,
    _equals_input,
    _equals_earlier,
    _reshaped,
    _overflow,
    _float32_rounding,
    _scale,
    _offset,
    _permuted_same_shape,
    _shift,
    _normalised_axis,
    _masked,
    _at_input_value,
    _triangle,
    _one_value("both"),
    _slices_permuted,
    _prefix,
    _one_value("expected"),
    _one_value("actual"),
    _some_positions,
    _per_axis("scale"),
    _per_axis("offset"),
    _near,
]
