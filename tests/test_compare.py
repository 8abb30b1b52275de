"""Failure messages say what is wrong: types, shapes, dtypes, NaN, worst index, tolerance,
and the known mistake a wrong answer matches."""

from __future__ import annotations

import math
import re
import types

import numpy as np
import pytest
import torch

from grader.compare import CheckFailure, Mistakes, assert_close, assert_equal, check


def failure(fn, *args, **kwargs) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        fn(*args, **kwargs)
    return info.value


def test_close_values_pass():
    x = torch.randn(4, 5)
    assert_close(x + 1e-7, x, atol=1e-6, rtol=0, name="y")
    assert_close([x, 1.0], (x, 1.0 + 1e-9), atol=1e-6, rtol=0)


def test_worst_element_reported_with_index_and_tolerance():
    expected = torch.zeros(3, 4)
    actual = expected.clone()
    actual[2, 1] = 0.5
    actual[0, 0] = 0.1
    msg = str(failure(assert_close, actual, expected, atol=1e-3, rtol=1e-4, name="softmax(x)"))
    assert msg.startswith("softmax(x): 2 of 12 values outside the tolerance (atol=0.001, rtol=0.0001)")
    assert "worst at index (2, 1): got 0.5, expected 0" in msg
    assert "max abs error 5.00e-01" in msg


@pytest.mark.parametrize(
    "actual, expected, words",
    [
        (torch.zeros(2, 3), torch.zeros(3, 2), "shape mismatch: expected (3, 2), got (2, 3)"),
        (torch.zeros(2, dtype=torch.float64), torch.zeros(2), "dtype mismatch: expected torch.float32, got torch.float64"),
        (np.zeros(2), torch.zeros(2), "expected a torch.Tensor, got a numpy.ndarray"),
        (torch.tensor([0.0, float("nan")]), torch.zeros(2), "1 NaN value where finite values were expected (first at index (1,)"),
        (torch.tensor([float("inf")]), torch.zeros(1), "Inf value"),
        (torch.zeros(1), torch.tensor([float("-inf")]), "expected Inf at index (0,)"),
        (torch.tensor([1.0, float("inf")]), torch.tensor([1.0, float("-inf")]), "expected -inf at index (1,), got inf"),
        (float("-inf"), float("inf"), "expected inf, got -inf"),
        ("text", 1.0, "expected a number, got a str"),
        ([1.0], (1.0, 2.0), "expected 2 items, got 1"),
    ],
)
def test_mismatches_are_named(actual, expected, words):
    assert words in str(failure(assert_close, actual, expected, atol=1e-6, rtol=1e-6))


def _shown(message: str) -> tuple[str, str]:
    found = re.search(r"got (\S+), expected (\S+?)[ ;,)]", message)
    assert found, message
    return found.group(1), found.group(2)


@pytest.mark.parametrize("scalar", [False, True])
def test_mismatched_values_are_printed_with_enough_digits_to_differ(scalar):
    # issue 9: a float64 result computed with a float32 constant (1e-8 relative) was shown as
    # "got -0.1228776, expected -0.1228776".
    expected = -0.12287764123456
    actual = expected * (1 + 3e-8)
    if scalar:
        msg = str(failure(assert_close, actual, expected, atol=1e-12, rtol=1e-10))
    else:
        msg = str(failure(assert_close, torch.tensor([0.5, actual], dtype=torch.float64),
                          torch.tensor([0.5, expected], dtype=torch.float64), atol=1e-12, rtol=1e-10))
    got, wanted = _shown(msg)
    assert got != wanted, msg
    # Each printed value is nearer its own number than the other one: the digits are right.
    assert abs(float(got) - actual) < abs(float(got) - expected), msg
    assert abs(float(wanted) - expected) < abs(float(wanted) - actual), msg


def test_mismatched_values_use_no_more_digits_than_needed():
    assert "got 0.5, expected 0.25" in str(failure(assert_close, 0.5, 0.25, atol=0, rtol=0))
    assert "got 0.1234568, expected 0.1234567" in str(failure(assert_close, 0.12345678, 0.12345671, atol=0, rtol=0))
    # Neighbouring float64 values need all 17 digits.
    got, wanted = _shown(str(failure(assert_close, math.nextafter(0.1, 1.0), 0.1, atol=0, rtol=0)))
    assert (got, wanted) == ("0.10000000000000002", "0.1")


def test_python_numbers_are_compared_in_float64():
    # Two float64 values one ulp apart, on either side of a float32 rounding boundary: in
    # float32 they would differ by a whole float32 ulp (6e-8 relative).
    low, high = np.float32(1.0), np.nextafter(np.float32(1.0), np.float32(2.0))
    middle = (float(low) + float(high)) / 2
    below, above = math.nextafter(middle, 0.0), math.nextafter(middle, 2.0)
    assert np.float32(below) != np.float32(above)
    assert_close(above, below, atol=0, rtol=1e-12)
    # And a difference far below float32's resolution still counts.
    assert "rel error 1.00e-09" in str(failure(assert_close, 1.0 + 1e-9, 1.0, atol=0, rtol=1e-12))


def test_nan_matches_nan_and_inf_matches_inf():
    x = torch.tensor([float("nan"), float("inf"), 1.0])
    assert_close(x.clone(), x, atol=0, rtol=0)


def test_a_known_mistake_is_named():
    good = types.SimpleNamespace(f=lambda x: x * 2)
    bad = types.SimpleNamespace(f=lambda x: x * 3)
    modules = {"tripled": ("multiplying by 3 instead of 2", bad)}
    x = torch.ones(3)
    err = failure(assert_close, bad.f(x), good.f(x), atol=1e-6, rtol=0, mistakes=Mistakes(modules, lambda m: m.f(x)))
    assert "known mistake gives: multiplying by 3 instead of 2" in str(err)
    assert err.mistake == "tripled"
    other = failure(assert_close, x * 5, good.f(x), atol=1e-6, rtol=0, mistakes=Mistakes(modules, lambda m: m.f(x)))
    assert other.mistake == "" and "known mistake" not in str(other)


def test_exact_equality_reports_first_difference():
    msg = str(failure(assert_equal, [1, 2, 4], [1, 2, 3], name="ids"))
    assert msg == "ids: item [2]: expected 3, got 4"
    assert "keys differ" in str(failure(assert_equal, {"a": 1}, {"b": 1}))
    assert_equal(torch.arange(3), torch.arange(3))


def test_check_fails_with_the_message():
    check(True, "unused")
    assert str(failure(check, False, "rows must sum to 1")) == "rows must sum to 1"
