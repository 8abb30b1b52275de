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


def _expect_table(expect: Any, n: int, dim: int, base: float = 10000.0, tol: Any = TOL) -> None:
    expect(lambda s: s.sinusoidal_encoding(n, dim, base=base), truth=closed_form(np.arange(n), dim, base), **tol,
           name=f"{_table_name(n, dim, base)} vs the formula (row = position, column = feature)")


@pytest.mark.points(2)
def test_sinusoidal_matches_formula(expect):
    for n, dim, base in ((50, 64, 10000.0), (37, 30, 10000.0), (24, 12, 500.0)):
        _expect_table(expect, n, dim, base)


@pytest.mark.points(2)
def test_sinusoidal_edge_sizes(expect):
    # One position (row 0 only), odd dims (last column is an unpaired sin), dim 1 (sin(pos)).
    for n, dim in ((1, 16), (1, 5), (21, 7), (13, 1), (9, 2)):
        _expect_table(expect, n, dim)


@pytest.mark.points(2)
def test_sinusoidal_large_positions_precision(expect):
    n, dim = 10001, 18

    def table(m: Any) -> Any:
        return m.sinusoidal_encoding(n, dim)

    got, expected = table(expect.solution), closed_form(np.arange(n), dim)
    with _float32_hint(got, expected):
        expect.compare(got, expected, table, **PRECISE, name=f"{_table_name(n, dim, 10000.0)} at positions up to {n - 1}")


def test_sinusoidal_bounded_and_relative_rotation(expect):
    n, dim, base = 256, 20, 10000.0

    def table(m: Any) -> Any:
        return m.sinusoidal_encoding(n, dim).double()

    pe = expect.solution.sinusoidal_encoding(n, dim)
    check(isinstance(pe, torch.Tensor) and tuple(pe.shape) == (n, dim),
          f"sinusoidal_encoding({n}, {dim}) must return a torch.Tensor of shape ({n}, {dim})")
    pe = pe.double()
    check(bool(pe.abs().max() <= 1.0), f"sinusoidal_encoding({n}, {dim}) has values outside [-1, 1]"
          f" (max |PE| = {float(pe.abs().max()):.6g}); every entry is a sin or a cos")
    row0 = torch.tensor([0.0, 1.0] * (dim // 2), dtype=torch.float64)
    expect.compare(pe[0], row0, lambda m: table(m)[0], atol=1e-7, rtol=0.0,
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
                          f" (columns 2i, 2i+1) of PE[pos], for pos = 0..{n - 1 - k}",
                     mistakes=expect.mistakes(lambda m, k=k: table(m)[k:]))


@pytest.mark.points(2)
def test_add_sinusoidal_with_offsets(expect, reference, rng):
    x = rng.randn(3, 9, 12)
    for offset in (0, 5, 1000):
        def add(m: Any, o: int = offset) -> Any:
            return m.add_sinusoidal(x, offset=o)

        got, expected = add(expect.solution), x + closed_form(np.arange(offset, offset + 9), 12)
        with _float32_hint(got, expected):
            expect.compare(got, expected, add, atol=1e-6, rtol=1e-6,
                           name=f"add_sinusoidal(x of shape (3, 9, 12), offset={offset})")

    # Incremental decoding: encoding the sequence in chunks equals encoding it at once.
    def chunked(m: Any) -> Any:
        chunks = [m.add_sinusoidal(x[:, a:b], offset=a) for a, b in ((0, 4), (4, 5), (5, 9))]
        return torch.cat(chunks, dim=1) if all(isinstance(t, torch.Tensor) for t in chunks) else chunks

    expect(chunked, truth=reference.add_sinusoidal(x), atol=1e-6, rtol=1e-6,
           name="add_sinusoidal applied to chunks x[:, 0:4], x[:, 4:5], x[:, 5:9] with offset = chunk start,"
                " concatenated, vs add_sinusoidal(x)")
    x64 = rng.randn(2, 5, 7, dtype=torch.float64)
    expect(lambda s: s.add_sinusoidal(x64, offset=3, base=100.0), truth=reference.add_sinusoidal(x64, offset=3, base=100.0),
           atol=1e-6, rtol=1e-6, name="add_sinusoidal(float64 x of shape (2, 5, 7), offset=3, base=100)")


def _learned(module: Any, max_positions: int, dim: int, weight: torch.Tensor | None = None) -> Any:
    emb = module.LearnedPositionalEmbedding(max_positions, dim)
    if weight is not None:
        emb.load_state_dict({"weight": weight})
    return emb


def _learned_forward(module: Any, weight: torch.Tensor, x: torch.Tensor, offset: int) -> Any:
    return _learned(module, *weight.shape, weight=weight)(x, offset=offset)


@pytest.mark.points(2)
def test_learned_parameters_and_init(expect):
    max_positions, dim = 300, 96
    emb = expect.solution.LearnedPositionalEmbedding(max_positions, dim)
    state = emb.state_dict()
    assert_equal(sorted(state), ["weight"], name="LearnedPositionalEmbedding(300, 96).state_dict() keys")
    w = state["weight"]
    assert_close(w, torch.zeros(max_positions, dim), atol=math.inf, rtol=0.0,
                 name="LearnedPositionalEmbedding(300, 96).state_dict()['weight'] (shape and dtype)")
    n = w.numel()
    mean, std = float(w.double().mean()), float(w.double().std())
    # 28,800 draws from N(0, 0.02**2): standard errors 1.2e-4 (mean) and 8e-5 (std), so the
    # bounds are 17 and 24 standard errors wide. grader.checks.assert_mean cannot state a rate
    # that small (its normal quantile is float64), and a rate it can state would be far larger.
    check(math.isfinite(mean) and abs(mean) < 2e-3 and 0.018 < std < 0.022,
          f"weight of LearnedPositionalEmbedding(300, 96) should be drawn from N(0, 0.02**2): "
          f"over its {n} entries got mean {mean:.4g}, std {std:.4g} (expected |mean| < 0.002, std in 0.018..0.022;"
          " a correct initialisation lands outside with probability below 1e-60)")
    other = expect.solution.LearnedPositionalEmbedding(max_positions, dim).state_dict()["weight"]
    check(not torch.equal(other, w), "two LearnedPositionalEmbedding(300, 96) got identical weights:"
          " draw them from torch's global random generator, do not reseed it")


@pytest.mark.points(2)
def test_learned_forward_known_weights(expect, rng):
    max_positions, dim, length = 40, 24, 6
    weight = rng.randn(max_positions, dim)
    x = rng.randn(2, length, dim)
    # offset max_positions - length uses the very last rows: the largest offset allowed.
    for offset in (0, 7, max_positions - length):
        expect(lambda s, o=offset: _learned_forward(s, weight, x, o), truth=x + weight[offset : offset + length],
               name=f"LearnedPositionalEmbedding(40, 24) with known weights, forward(x of shape (2, 6, 24),"
                    f" offset={offset}) (expected x + weight[{offset}:{offset + length}])")
    x1 = rng.randn(3, 1, dim)  # one new token while decoding
    expect(lambda s: _learned_forward(s, weight, x1, 39), truth=x1 + weight[39:40],
           name="forward(x of shape (3, 1, 24), offset=39) (the last position)")


def test_learned_gradient_reaches_weight(expect, rng):
    max_positions, dim, length, offset = 16, 8, 5, 3
    weight = rng.randn(max_positions, dim)
    x, grad_out = rng.randn(4, length, dim), rng.randn(4, length, dim)

    def emb(m: Any) -> Any:
        return _learned(m, max_positions, dim, weight=weight)

    call = f"forward(x of shape (4, 5, 8), offset={offset})"
    got = expect.gradients(emb, [x, offset], truth=lambda x, o: x + weight[o : o + length], grad_output=grad_out,
                           atol=0.0, rtol=0.0, output=False, name=f"{call} and backward (input 0 = x)")
    grads = got["param_grads"]
    check("weight" in grads and grads["weight"] is not None,
          "LearnedPositionalEmbedding has no trainable parameter 'weight' that receives a gradient"
          f" (named parameters with gradients: {sorted(k for k, v in grads.items() if v is not None)});"
          " make weight an nn.Parameter and add it without detaching")
    expected = torch.zeros(max_positions, dim)
    expected[offset : offset + length] = grad_out.sum(0)
    expect.compare(grads["weight"], expected,
                   lambda m: probes.grad(emb(m), [x, offset], grad_out)["param_grads"]["weight"], atol=1e-5, rtol=1e-5,
                   name=f"gradient of weight after {call} and backward"
                        " (rows 3..7 get the batch sum of the output gradient, other rows 0)")


def test_learned_rejects_positions_out_of_range(expect, rng):
    max_positions, dim = 8, 4
    emb = _learned(expect.solution, max_positions, dim)
    for length, offset in ((3, 7), (9, 0), (1, 8), (2, -1)):
        x = rng.randn(2, length, dim)
        check(raises(lambda x=x, o=offset: emb(x, offset=o)),
              f"LearnedPositionalEmbedding({max_positions}, {dim}).forward(x of shape (2, {length}, {dim}),"
              f" offset={offset}) asks for positions {offset}..{offset + length - 1}, outside 0..{max_positions - 1}:"
              " it must raise ValueError (not truncate, wrap around or broadcast a shorter slice)")


@pytest.mark.hidden
def test_hidden_bfloat16_and_whole_table(expect, rng):
    """Cases the public checks do not show: add_sinusoidal on a bfloat16 batch of one token
    at a random offset in the thousands (the result keeps x's dtype), the sinusoidal table
    with an odd dim at a large base, and a learned table used whole (L = max_positions,
    offset 0) with an odd dim."""
    offset = int(rng.randint(1000, 10000, (1,)))
    x = rng.randn(1, 1, 9, dtype=torch.bfloat16)
    # one bfloat16 ulp (1/128 relative) of room: rounding the sum may differ by one step
    expect(lambda s: s.add_sinusoidal(x, offset=offset),
           truth=x + closed_form(np.arange(offset, offset + 1), 9).to(torch.bfloat16), atol=1e-2, rtol=1e-2,
           name=f"add_sinusoidal(bfloat16 x of shape (1, 1, 9), offset={offset})")
    _expect_table(expect, 17, 11, base=1e6)
    weight, whole = rng.randn(11, 5), rng.randn(1, 11, 5)
    expect(lambda s: _learned_forward(s, weight, whole, 0), truth=whole + weight,
           name="LearnedPositionalEmbedding(11, 5) with known weights, forward(x of shape (1, 11, 5), offset=0)"
                " (every row of the table: expected x + weight)")
