"""Checks for attention.positional.

The sinusoidal table is judged against the closed-form formula of "Attention Is All You Need",
evaluated here in float64 with numpy (independently of the reference), and against its
properties: values in [-1, 1], row 0 = [0, 1, 0, 1, ...], and PE[pos + k] = a fixed rotation
of PE[pos] in each (sin, cos) pair. The learned embedding is built in the student's process;
the judge reads its state_dict (names, shapes, init statistics), loads known weights with
load_state_dict and checks forward exactly, its gradient, and its range checks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from grader import probes
from grader.compare import CheckFailure, assert_close, assert_equal, check, raises

# A float64 angle cast to float32 after sin/cos is within 6e-8 of the exact value; the formula
# tests at positions < 64 allow float32 angles too (error < 2e-6 there), the precision test
# at positions up to 10000 does not (a float32 angle is off by up to 5e-4 there).
TOL = {"atol": 1e-5, "rtol": 0.0}
PRECISE = {"atol": 1e-6, "rtol": 0.0}


def closed_form(positions: np.ndarray, dim: int, base: float = 10000.0) -> torch.Tensor:
    """PE[pos, j] straight from the paper's formula, in float64, cast to float32 at the end."""
    pos = np.asarray(positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    i = j // 2
    angle = pos / np.power(float(base), 2.0 * i / dim)
    pe = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.from_numpy(pe).to(torch.float32)


def _table_name(n: int, dim: int, base: float) -> str:
    b = "" if base == 10000.0 else f", base={base:g}"
    return f"sinusoidal_encoding({n}, {dim}{b})"


@contextlib.contextmanager
def _float32_hint(got: Any, expected: torch.Tensor) -> Iterator[None]:
    """A result that is off by a little (not a wrong formula) almost surely used float32 angles."""
    try:
        yield
    except CheckFailure as e:
        close = isinstance(got, torch.Tensor) and got.shape == expected.shape
        if e.mistake or not close or float((got.double() - expected.double()).abs().max()) > 1e-2:
            raise
        raise CheckFailure(f"{e}\nThe error grows with the position: compute pos / base ** (2i / dim) and"
                           " its sin/cos in float64 and cast only the finished table to float32.") from None


def _check_table(solution: Any, mistakes: Any, n: int, dim: int, base: float = 10000.0, tol: Any = TOL) -> None:
    got = solution.sinusoidal_encoding(n, dim, base=base)
    assert_close(got, closed_form(np.arange(n), dim, base), **tol,
                 name=f"{_table_name(n, dim, base)} vs the formula (row = position, column = feature)",
                 mistakes=mistakes(lambda m: m.sinusoidal_encoding(n, dim, base=base)))


@pytest.mark.points(2)
def test_sinusoidal_matches_formula(solution, mistakes):
    for n, dim, base in ((50, 64, 10000.0), (37, 30, 10000.0), (24, 12, 500.0)):
        _check_table(solution, mistakes, n, dim, base)


@pytest.mark.points(2)
def test_sinusoidal_edge_sizes(solution, mistakes):
    # One position (row 0 only), odd dims (last column is an unpaired sin), dim 1 (sin(pos)).
    for n, dim in ((1, 16), (1, 5), (21, 7), (13, 1), (9, 2)):
        _check_table(solution, mistakes, n, dim)


@pytest.mark.points(2)
def test_sinusoidal_large_positions_precision(solution, mistakes):
    n, dim = 10001, 18
    got = solution.sinusoidal_encoding(n, dim)
    expected = closed_form(np.arange(n), dim)
    with _float32_hint(got, expected):
        assert_close(got, expected, **PRECISE,
                     name=f"{_table_name(n, dim, 10000.0)} at positions up to {n - 1}",
                     mistakes=mistakes(lambda m: m.sinusoidal_encoding(n, dim)))


def test_sinusoidal_bounded_and_relative_rotation(solution):
    n, dim, base = 256, 20, 10000.0
    pe = solution.sinusoidal_encoding(n, dim)
    check(isinstance(pe, torch.Tensor) and tuple(pe.shape) == (n, dim),
          f"sinusoidal_encoding({n}, {dim}) must return a torch.Tensor of shape ({n}, {dim})")
    pe = pe.double()
    check(bool(pe.abs().max() <= 1.0), f"sinusoidal_encoding({n}, {dim}) has values outside [-1, 1]"
          f" (max |PE| = {float(pe.abs().max()):.6g}); every entry is a sin or a cos")
    row0 = torch.tensor([0.0, 1.0] * (dim // 2), dtype=torch.float64)
    assert_close(pe[0], row0, atol=1e-7, rtol=0.0,
                 name="row 0 of the sinusoidal table (position 0: sin 0 = 0 in even columns, cos 0 = 1 in odd)")
    # Linear relative-position property: in pair i, (sin, cos)(pos + k) = R(k w_i) (sin, cos)(pos),
    # with w_i = base ** (-2i / dim); the map depends on k only, not on pos.
    w = base ** (-2.0 * torch.arange(dim // 2, dtype=torch.float64) / dim)
    s, c = pe[:, 0::2], pe[:, 1::2]
    for k in (1, 7, 50):
        ck, sk = torch.cos(k * w), torch.sin(k * w)
        predicted = torch.stack([s[:-k] * ck + c[:-k] * sk, c[:-k] * ck - s[:-k] * sk], dim=-1).reshape(n - k, dim)
        # float32 table entries: 1e-4 leaves room even for float32 angles at positions < 256.
        assert_close(pe[k:], predicted, atol=1e-4, rtol=0.0,
                     name=f"PE[pos + {k}] vs the rotation by {k} * base**(-2i/dim) of each (sin, cos) pair"
                          f" (columns 2i, 2i+1) of PE[pos], for pos = 0..{n - 1 - k}")


@pytest.mark.points(2)
def test_add_sinusoidal_with_offsets(solution, reference, rng, mistakes):
    x = rng.randn(3, 9, 12)
    for offset in (0, 5, 1000):
        got = solution.add_sinusoidal(x, offset=offset)
        expected = x + closed_form(np.arange(offset, offset + 9), 12)
        with _float32_hint(got, expected):
            assert_close(got, expected, atol=1e-6, rtol=1e-6,
                         name=f"add_sinusoidal(x of shape (3, 9, 12), offset={offset})",
                         mistakes=mistakes(lambda m, o=offset: m.add_sinusoidal(x, offset=o)))
    # Incremental decoding: encoding the sequence in chunks equals encoding it at once.
    chunks = [solution.add_sinusoidal(x[:, a:b], offset=a) for a, b in ((0, 4), (4, 5), (5, 9))]
    got = torch.cat(chunks, dim=1) if all(isinstance(t, torch.Tensor) for t in chunks) else chunks
    assert_close(got, reference.add_sinusoidal(x), atol=1e-6, rtol=1e-6,
                 name="add_sinusoidal applied to chunks x[:, 0:4], x[:, 4:5], x[:, 5:9] with offset = chunk start,"
                      " concatenated, vs add_sinusoidal(x)")
    x64 = rng.randn(2, 5, 7, dtype=torch.float64)
    assert_close(solution.add_sinusoidal(x64, offset=3, base=100.0), reference.add_sinusoidal(x64, offset=3, base=100.0),
                 atol=1e-6, rtol=1e-6, name="add_sinusoidal(float64 x of shape (2, 5, 7), offset=3, base=100)",
                 mistakes=mistakes(lambda m: m.add_sinusoidal(x64, offset=3, base=100.0)))


def _learned(module: Any, max_positions: int, dim: int, weight: torch.Tensor | None = None) -> Any:
    emb = module.LearnedPositionalEmbedding(max_positions, dim)
    if weight is not None:
        emb.load_state_dict({"weight": weight})
    return emb


def _learned_forward(module: Any, weight: torch.Tensor, x: torch.Tensor, offset: int) -> Any:
    return _learned(module, *weight.shape, weight=weight)(x, offset=offset)


@pytest.mark.points(2)
def test_learned_parameters_and_init(solution):
    max_positions, dim = 300, 96
    emb = solution.LearnedPositionalEmbedding(max_positions, dim)
    state = emb.state_dict()
    assert_equal(sorted(state), ["weight"], name="LearnedPositionalEmbedding(300, 96).state_dict() keys")
    w = state["weight"]
    assert_close(w, torch.zeros(max_positions, dim), atol=math.inf, rtol=0.0,
                 name="LearnedPositionalEmbedding(300, 96).state_dict()['weight'] (shape and dtype)")
    n = w.numel()
    mean, std = float(w.double().mean()), float(w.double().std())
    # 28,800 draws from N(0, 0.02**2): standard errors 1.2e-4 (mean) and 8e-5 (std); bounds are loose.
    check(math.isfinite(mean) and abs(mean) < 2e-3 and 0.018 < std < 0.022,
          f"weight of LearnedPositionalEmbedding(300, 96) should be drawn from N(0, 0.02**2): "
          f"over its {n} entries got mean {mean:.4g}, std {std:.4g} (expected |mean| < 0.002, std in 0.018..0.022)")
    other = solution.LearnedPositionalEmbedding(max_positions, dim).state_dict()["weight"]
    check(not torch.equal(other, w), "two LearnedPositionalEmbedding(300, 96) got identical weights:"
          " draw them from torch's global random generator, do not reseed it")


@pytest.mark.points(2)
def test_learned_forward_known_weights(solution, rng, mistakes):
    max_positions, dim, length = 40, 24, 6
    weight = rng.randn(max_positions, dim)
    x = rng.randn(2, length, dim)
    # offset max_positions - length uses the very last rows: the largest offset allowed.
    for offset in (0, 7, max_positions - length):
        got = _learned_forward(solution, weight, x, offset)
        assert_equal(got, x + weight[offset : offset + length],
                     name=f"LearnedPositionalEmbedding(40, 24) with known weights, forward(x of shape (2, 6, 24),"
                          f" offset={offset}) (expected x + weight[{offset}:{offset + length}])",
                     mistakes=mistakes(lambda m, o=offset: _learned_forward(m, weight, x, o)))
    x1 = rng.randn(3, 1, dim)  # one new token while decoding
    assert_equal(_learned_forward(solution, weight, x1, 39), x1 + weight[39:40],
                 name="forward(x of shape (3, 1, 24), offset=39) (the last position)",
                 mistakes=mistakes(lambda m: _learned_forward(m, weight, x1, 39)))


def test_learned_gradient_reaches_weight(solution, rng):
    max_positions, dim, length, offset = 16, 8, 5, 3
    emb = _learned(solution, max_positions, dim, weight=rng.randn(max_positions, dim))
    x, grad_out = rng.randn(4, length, dim), rng.randn(4, length, dim)
    result = probes.grad(emb, [x, offset], grad_out)
    grads = result["param_grads"]
    check("weight" in grads and grads["weight"] is not None,
          "LearnedPositionalEmbedding has no trainable parameter 'weight' that receives a gradient"
          f" (named parameters with gradients: {sorted(k for k, v in grads.items() if v is not None)});"
          " make weight an nn.Parameter and add it without detaching")
    expected = torch.zeros(max_positions, dim)
    expected[offset : offset + length] = grad_out.sum(0)
    assert_close(grads["weight"], expected, atol=1e-5, rtol=1e-5,
                 name="gradient of weight after forward(x of shape (4, 5, 8), offset=3) and backward"
                      " (rows 3..7 get the batch sum of the output gradient, other rows 0)")
    assert_close(result["input_grads"][0], grad_out, atol=0.0, rtol=0.0, name="gradient of x")




def test_learned_rejects_positions_out_of_range(solution, rng):
    max_positions, dim = 8, 4
    emb = _learned(solution, max_positions, dim)
    for length, offset in ((3, 7), (9, 0), (1, 8), (2, -1)):
        x = rng.randn(2, length, dim)
        check(raises(lambda x=x, o=offset: emb(x, offset=o)),
              f"LearnedPositionalEmbedding({max_positions}, {dim}).forward(x of shape (2, {length}, {dim}),"
              f" offset={offset}) asks for positions {offset}..{offset + length - 1}, outside 0..{max_positions - 1}:"
              " it must raise ValueError (not truncate, wrap around or broadcast a shorter slice)")
