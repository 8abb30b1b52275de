"""Checks for pretraining.data: random windows from a token file, document packing, positions.

Ground truth is the stated convention, recomputed in the judge by its own code: the seeded
`torch.randint` draw of the start indices, indexing into the data for the windows, a flat
stream cut into rows for packing, and a plain loop for the position ids. Token data is a
permutation of distinct ids (uint16 ones spanning 0..65535, int32 ones above 65535), so every
window's start index can be read off its first token: the windows check and the start-index
statistics judge any draw, not only the stated one.

The memory map must live in the student's process: `load_tokens` and then `get_batch` on its
result run there in one `probes.run_program` program, and only the path, a few attributes and
the batch cross. The token files are written by the judge into a temporary directory.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import torch

from grader import probes
from grader.compare import assert_equal, check, raises

# Start-index statistics: a flagged count has probability at most TAIL for a correct solution,
# per start and for the chi-square, so a correct solution fails with probability below 1e-7.
TAIL = 1e-10
DRAWS_PER_START = 200


def permutation_data(rng: Any, n: int, dtype: type = np.uint16) -> np.ndarray:
    """n distinct token ids: uint16 ones drawn from all of 0..65535, int32 ones from 65536 up."""
    if dtype == np.uint16:
        return rng.np.permutation(65536)[:n].astype(np.uint16)
    return (rng.np.permutation(4 * n)[:n] + 65536).astype(dtype)


def _describe(data: np.ndarray) -> str:
    return f"data ({data.dtype}, {len(data)} tokens)"


def expected_batch(data: np.ndarray, batch_size: int, context_length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The stated draw, then the windows as index arithmetic on an int64 copy of data."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(data) - context_length, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(context_length)
    tokens = torch.from_numpy(np.asarray(data).astype(np.int64))
    return tokens[index], tokens[index + 1]


def _xy(got: Any, what: str, batch_size: int, context_length: int,
        check_dtype: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) pair, after checking its structure, shapes and (unless told not to) dtypes."""
    check(isinstance(got, (tuple, list)) and len(got) == 2,
          f"{what}: expected a tuple (x, y) of two tensors, got {type(got).__name__}"
          + (f" of {len(got)} items" if isinstance(got, (tuple, list)) else ""))
    shape = (batch_size, context_length)
    for name, t in zip("xy", got):
        check(isinstance(t, torch.Tensor), f"{what}: {name} is a {type(t).__name__}, expected a torch.Tensor")
        check(tuple(t.shape) == shape, f"{what}: {name} has shape {tuple(t.shape)}, expected (batch_size, context_length) = {shape}")
        check(t.dtype == torch.int64 or not check_dtype,
              f"{what}: {name} has dtype {t.dtype}, expected torch.int64: convert the windows with .astype(np.int64) "
              "(nn.Embedding and F.cross_entropy want int64 token ids, and a uint16 tensor barely supports arithmetic)")
    return got[0], got[1]


def _shown(values: list[int]) -> str:
    """A window for a message: the whole list when short, its first tokens otherwise."""
    return str(values) if len(values) <= 10 else "[" + ", ".join(map(str, values[:8])) + f", ... ({len(values)} tokens)]"


def window_starts(data: np.ndarray, x: torch.Tensor, y: torch.Tensor, what: str) -> np.ndarray:
    """Each row's start index, after checking that x's rows are windows of data and y is x shifted.

    data's values are distinct, so x[b, 0] says where row b starts.
    """
    n = len(data)
    batch_size, context_length = x.shape
    values = np.asarray(data).astype(np.int64)
    order = np.argsort(values)
    ordered = values[order]
    first = x[:, 0].numpy()
    pos = np.minimum(np.searchsorted(ordered, first), n - 1)
    found = ordered[pos] == first
    if not found.all():
        b = int(np.flatnonzero(~found)[0])
        v = int(first[b])
        hint = ""
        if v < 0 and data.dtype == np.uint16 and (v % 65536) in set(values.tolist()):
            hint = (f" {v} + 65536 = {v + 65536} is one: the uint16 ids went through a signed 16-bit type "
                    "(int16) and wrapped around; convert with .astype(np.int64)")
        check(False, f"{what}: x[{b}, 0] = {v} is not a token of data.{hint}")
    starts = order[pos]
    index = np.minimum(starts[:, None] + np.arange(context_length), n - 1)
    windows = torch.from_numpy(values[index])
    bad = ~(x == windows).all(dim=1)
    if bad.any():
        b = int(bad.nonzero()[0])
        s = int(starts[b])
        check(False, f"{what}: x[{b}] = {_shown(x[b].tolist())} is not a contiguous window of data: it starts with data[{s}], "
                     f"but data[{s} : {s + context_length}] = {_shown(values[s:s + context_length].tolist())}")
    late = starts > n - context_length - 1
    if late.any():
        b = int(np.flatnonzero(late)[0])
        check(False, f"{what}: x[{b}] is data[{n - context_length} : {n}], the last {context_length} tokens: no token "
                     f"follows it, so y[{b}] cannot be its shift. The last valid start is len(data) - context_length - 1 "
                     f"= {n - context_length - 1}: torch.randint(0, len(data) - context_length, ...) (high is exclusive)")
    targets = torch.from_numpy(values[starts[:, None] + 1 + np.arange(context_length)])
    bad = ~(y == targets).all(dim=1)
    if bad.any():
        b = int(bad.nonzero()[0])
        s = int(starts[b])
        message = (f"{what}: row {b} starts at s = {s} (x[{b}] = data[{s} : {s + context_length}]), so y[{b}] must be "
                   f"data[{s + 1} : {s + 1 + context_length}] = {_shown(targets[b].tolist())} (the next token at each position), "
                   f"got {_shown(y[b].tolist())}")
        if torch.equal(y[b], x[b]):
            message += ": y equals x, the targets were not shifted (position t would learn to copy its own input)"
        elif s >= 1 and y[b].tolist() == values[s - 1:s - 1 + context_length].tolist():
            message += ": y is shifted the wrong way, y[b, t] = x[b, t - 1] (each position would predict the PREVIOUS token)"
        check(False, message)
    return starts


@pytest.mark.points(3)
def test_get_batch_matches_seeded_draw(solution, rng, mistakes):
    # The stated draw, on uint16 ids up to 65535, int32 ids above 65535 and int64 ids; one
    # window of length 1; and data only one token longer than the context (a single start).
    cases = [
        (permutation_data(rng, 1000), 8, 16),
        (permutation_data(rng, 300), 5, 1),
        (permutation_data(rng, 500, np.int32), 6, 33),
        (permutation_data(rng, 64, np.int64), 4, 7),
        (permutation_data(rng, 25), 3, 24),
    ]
    for data, batch_size, context_length in cases:
        seed = int(rng.np.integers(0, 2**31))
        what = f"get_batch({_describe(data)}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
        got = solution.get_batch(data, batch_size, context_length, seed)
        # The dtype is left to assert_equal, which names the known mistake behind a wrong one.
        _xy(got, what, batch_size, context_length, check_dtype=False)
        assert_equal(tuple(got), expected_batch(data, batch_size, context_length, seed),
                     name=f"{what} vs starts = torch.randint(0, len(data) - context_length, (batch_size,), "
                          "generator=torch.Generator().manual_seed(seed)) (items: x, y)",
                     mistakes=mistakes(lambda m, d=data, b=batch_size, c=context_length, s=seed:
                                       tuple(m.get_batch(d, b, c, s))))


@pytest.mark.points(2)
def test_get_batch_windows_and_shift(solution, rng):
    # Whatever the draw: every row of x is a window of data, y is the same window one token later.
    for data, batch_size, context_length in ((permutation_data(rng, 2000), 64, 32),
                                             (permutation_data(rng, 400, np.int32), 16, 9)):
        seed = int(rng.np.integers(0, 2**31))
        what = f"get_batch({_describe(data)}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
        x, y = _xy(solution.get_batch(data, batch_size, context_length, seed), what, batch_size, context_length)
        window_starts(data, x, y, what)


def binomial_bounds(n: int, p: float, tail: float) -> tuple[int, int]:
    """(lo, hi) with P(X < lo) <= tail and P(X > hi) <= tail for X ~ Binomial(n, p), exactly."""
    k = torch.arange(n + 1, dtype=torch.float64)
    log_pmf = (torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
               + k * math.log(p) + (n - k) * math.log1p(-p))
    pmf = log_pmf.exp()
    below = torch.cumsum(pmf, 0) - pmf  # P(X < k)
    above = torch.flip(torch.cumsum(torch.flip(pmf, [0]), 0), [0]) - pmf  # P(X > k)
    lo = int((below <= tail).nonzero().max())
    hi = int((above <= tail).nonzero().min())
    return lo, hi


def chi_square_threshold(df: int, tail: float) -> float:
    """Wilson-Hilferty's chi-square quantile: slightly above the exact one at these tails."""
    z = NormalDist().inv_cdf(1 - tail)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.points(2)
def test_get_batch_start_statistics(solution, rng):
    # 97 valid starts, 200 draws of each expected: each start's count, the first's and the last's
    # included, must lie within exact binomial bounds, and the counts must pass a chi-square test.
    data = permutation_data(rng, 100)
    context_length = 3
    n_starts = len(data) - context_length
    batch_size = DRAWS_PER_START * n_starts
    seed = int(rng.np.integers(0, 2**31))
    what = f"get_batch({_describe(data)}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
    x, y = _xy(solution.get_batch(data, batch_size, context_length, seed), what, batch_size, context_length)
    counts = np.bincount(window_starts(data, x, y, what), minlength=n_starts)
    expected = batch_size / n_starts
    lo, hi = binomial_bounds(batch_size, 1 / n_starts, TAIL)
    where = (f"{what}: the valid starts are 0 .. len(data) - context_length - 1 = {n_starts - 1}, each drawn about "
             f"{expected:g} times in {batch_size} draws")
    for s, name in ((n_starts - 1, "the LAST valid start"), (0, "the first valid start")):
        check(counts[s] >= lo,
              f"{where}; {name}, {s}, was drawn {counts[s]} times (at least {lo} expected). "
              "torch.randint(low, high) never returns high: the starts come from "
              "torch.randint(0, len(data) - context_length, ...)")
    outside = np.flatnonzero((counts < lo) | (counts > hi))
    check(len(outside) == 0,
          f"{where}; {len(outside)} starts were drawn outside [{lo}, {hi}] times, e.g. start "
          f"{int(outside[0]) if len(outside) else 0} drawn {int(counts[outside[0]]) if len(outside) else 0} times: "
          "the starts are not uniform over every valid start")
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    limit = chi_square_threshold(n_starts - 1, TAIL)
    check(chi2 <= limit,
          f"{where}; the counts' chi-square statistic is {chi2:.1f} with {n_starts - 1} degrees of freedom, above "
          f"{limit:.1f} (p < {TAIL:g}): the starts are not uniform over every valid start")


def memmap_program(path: str, dtype: str | None, batch_size: int, context_length: int, seed: int) -> list[list[Any]]:
    """A program for the student's process: m = load_tokens(path[, dtype]), then get_batch(m, ...).

    Registers 2, 4, 6, 7, 0 and 8 hold m's class name, m.flags.writeable, m.dtype.str, m.shape,
    m itself (its contents cross as an array) and get_batch's (x, y).
    """
    kwargs = {} if dtype is None else {"dtype": ["val", dtype]}
    program = [
        ["call", "load_tokens", [["val", path]], kwargs],  # 0
        ["getattr", 0, "__class__"],  # 1
        ["getattr", 1, "__name__"],  # 2
        ["getattr", 0, "flags"],  # 3
        ["getattr", 3, "writeable"],  # 4
        ["getattr", 0, "dtype"],  # 5
        ["getattr", 5, "str"],  # 6
        ["getattr", 0, "shape"],  # 7
        ["call", "get_batch", [["reg", 0], ["val", batch_size], ["val", context_length], ["val", seed]]],  # 8
    ]
    return program


@pytest.mark.points(2)
def test_load_tokens_memmap_and_get_batch(solution, rng, mistakes, shared_dir):
    # Files as a data pipeline writes them: np.array(ids, dtype=...).tofile(path). The default
    # dtype (uint16) and an explicit "int32" for ids above 65535. The solution reads them
    # from shared_dir, the one directory of the judge's that its sandbox shows it.
    for dtype, data, batch_size, context_length in (
        (None, permutation_data(rng, 3000), 12, 64),
        ("int32", permutation_data(rng, 700, np.int32), 7, 20),
    ):
        path = str(shared_dir / f"train_{data.dtype}.bin")
        data.tofile(path)
        seed = int(rng.np.integers(0, 2**31))
        call = "load_tokens(path)" if dtype is None else f"load_tokens(path, dtype={dtype!r})"
        what = f"{call} on a file written by np.array(ids, dtype=np.{data.dtype}).tofile(path) ({len(data)} tokens)"
        program = memmap_program(path, dtype, batch_size, context_length, seed)
        kind, writeable, dtype_str, shape, contents, got = probes.run_program(solution, program, [2, 4, 6, 7, 0, 8])
        check(kind == "memmap",
              f"{what}: returned a {kind}, expected a numpy.memmap: np.memmap(path, dtype=dtype, mode='r') maps the "
              "file instead of reading all of it into memory (np.fromfile and np.load read the whole file)")
        check(dtype_str == data.dtype.str,
              f"{what}: the memmap's dtype is {np.dtype(dtype_str)}, expected {data.dtype}: pass `dtype` to np.memmap")
        check(tuple(shape) == data.shape, f"{what}: the memmap's shape is {tuple(shape)}, expected {data.shape}")
        check(not writeable,
              f"{what}: the memmap is writable: np.memmap's default mode is 'r+', which opens the token file for "
              "writing; open it read-only with mode='r'")
        # A copy: in direct mode `contents` is the read-only memmap itself.
        assert_equal(np.array(contents), data, name=f"{what}: the memmap's contents vs the ids written")
        call = f"get_batch({call}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
        _xy(got, call, batch_size, context_length)
        assert_equal(tuple(got), expected_batch(data, batch_size, context_length, seed), name=f"{call} (items: x, y)",
                     mistakes=mistakes(lambda m, d=data, b=batch_size, c=context_length, s=seed:
                                       tuple(m.get_batch(d, b, c, s))))


def test_get_batch_edge_cases(solution, rng, mistakes):
    # One token more than the context: the only start is 0, every row is the whole data.
    data = permutation_data(rng, 17)
    got = solution.get_batch(data, 4, 16, 7)
    what = f"get_batch({_describe(data)}, batch_size=4, context_length=16, seed=7): the only valid start is 0"
    _xy(got, what, 4, 16)
    assert_equal(tuple(got), expected_batch(data, 4, 16, 7), name=f"{what} (items: x, y)",
                 mistakes=mistakes(lambda m: tuple(m.get_batch(data, 4, 16, 7))))
    for n, context_length in ((16, 16), (5, 16), (1, 1)):
        short = permutation_data(rng, n)
        check(raises(lambda d=short, c=context_length: solution.get_batch(d, 2, c, 0)),
              f"get_batch({_describe(short)}, batch_size=2, context_length={context_length}, seed=0) should raise "
              f"ValueError: a window needs context_length + 1 = {context_length + 1} tokens")
    # The draw uses its own generator: torch's global random state is neither reseeded nor advanced.
    data = permutation_data(rng, 200)
    program: list[Any] = [["import", "torch"]]
    torch_reg = 0
    program.append(["method", torch_reg, "get_rng_state", []])
    before = len(program) - 1
    program.append(["call", "get_batch", [["val", data], ["val", 8], ["val", 10], ["val", 1234]]])
    program.append(["method", torch_reg, "get_rng_state", []])
    after = len(program) - 1
    state_before, state_after = probes.run_program(solution, program, [before, after])
    check(torch.equal(state_before, state_after),
          f"get_batch({_describe(data)}, batch_size=8, context_length=10, seed=1234) changed torch's global random "
          "state (torch.manual_seed, or torch.randint without generator=): draw from your own "
          "torch.Generator().manual_seed(seed) and leave the global generator to the training loop")


# --- packing ---------------------------------------------------------------------------


def expected_rows(documents: list[list[int]], eos_id: int, context_length: int) -> torch.Tensor:
    """Every non-empty document then one EOS, cut into whole rows of context_length + 1."""
    stream = list(itertools.chain.from_iterable([*doc, eos_id] for doc in documents if doc))
    width = context_length + 1
    rows = [stream[i:i + width] for i in range(0, len(stream) - width + 1, width)]
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), width)


def random_documents(rng: Any, n: int, context_length: int, vocab: int, eos_id: int) -> list[list[int]]:
    """Empty, short and longer-than-a-row documents, none of them containing eos_id."""
    docs = []
    for _ in range(n):
        kind = rng.np.integers(0, 6)
        length = 0 if kind == 0 else int(rng.np.integers(1, 6)) if kind < 4 else int(rng.np.integers(context_length, 3 * context_length + 3))
        tokens = rng.np.integers(0, vocab - 1, length)
        docs.append([int(t) + int(t >= eos_id) for t in tokens])  # every id but eos_id
    return docs


def _check_pack(solution: Any, mistakes: Any, documents: list[list[int]], eos_id: int, context_length: int,
                about: str) -> None:
    expected = expected_rows(documents, eos_id, context_length)
    stream = sum(len(d) + 1 for d in documents if d)
    shown = repr(documents) if len(repr(documents)) <= 160 else f"{len(documents)} documents"
    n_rows, dropped = expected.shape[0], stream % (context_length + 1)
    what = (f"pack_documents({shown}, eos_id={eos_id}, context_length={context_length}) ({about}); the stream has "
            f"{stream} tokens: {n_rows} whole row{'' if n_rows == 1 else 's'} of {context_length + 1}, "
            + (f"the last {dropped} dropped" if dropped else "nothing dropped"))
    got = solution.pack_documents(documents, eos_id, context_length)
    assert_equal(got, expected, name=what,
                 mistakes=mistakes(lambda m: m.pack_documents(documents, eos_id, context_length)))


@pytest.mark.points(3)
def test_pack_documents_matches_stream(solution, rng, mistakes):
    for n, context_length, vocab, eos_id in ((40, 16, 50257, 50256), (25, 7, 1000, 0), (60, 32, 300, 17)):
        documents = random_documents(rng, n, context_length, vocab, eos_id)
        _check_pack(solution, mistakes, documents, eos_id, context_length,
                    "empty ones, short ones and ones longer than a row")


@pytest.mark.points(2)
def test_pack_documents_edge_cases(solution, mistakes):
    eos = 2
    for documents, context_length, about in (
        ([[5, 6, 7], [8, 9]], 3, "3 + 1 + 2 + 1 = 7 tokens: one row, 3 dropped"),
        ([[5, 6, 7], [8, 9, 10]], 3, "exactly two rows, nothing dropped, the second ends with the last EOS"),
        ([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]], 2, "one document over four rows"),
        ([[], [5], [], [], [6, 7], []], 1, "empty documents add nothing, not even an EOS"),
        ([[5, 2, 6], [7]], 2, "a document's own tokens are kept, even one equal to eos_id"),
        ([[3, 4, 5], [6]], 1, "context_length 1: rows of 2"),
        ([[5, 6]], 8, "a stream shorter than a row: no rows"),
        ([[], []], 4, "only empty documents: no rows"),
        ([], 4, "no documents: no rows"),
    ):
        _check_pack(solution, mistakes, documents, eos, context_length, about)


def expected_positions(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    out = torch.zeros_like(tokens)
    for r in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1]):
            out[r, t] = 0 if tokens[r, t - 1] == eos_id else out[r, t - 1] + 1
    return out


@pytest.mark.points(2)
def test_document_position_ids(solution, rng, mistakes):
    eos = 0
    cases = [
        (torch.tensor([[5, 6, 0, 7, 0, 0, 8]]), "the docstring's example"),
        (torch.tensor([[0, 4, 4], [4, 4, 4], [4, 0, 0]]), "an EOS first, no EOS, two EOS at the end"),
        (torch.tensor([[3], [0]]), "rows of one token"),
        (torch.zeros(0, 5, dtype=torch.int64), "no rows"),
    ]
    rows = expected_rows(random_documents(rng, 30, 12, 50, eos), eos, 12)
    cases.append((rows[:, :-1].contiguous(), "x = rows[:, :-1] of pack_documents(30 random documents, eos_id=0, "
                                             "context_length=12): rows may start in mid-document"))
    for tokens, about in cases:
        shown = tokens.tolist() if tokens.numel() <= 24 else f"a {tuple(tokens.shape)} tensor"
        got = solution.document_position_ids(tokens, eos)
        assert_equal(got, expected_positions(tokens, eos),
                     name=f"document_position_ids({shown}, eos_id={eos}) ({about})",
                     mistakes=mistakes(lambda m, t=tokens: m.document_position_ids(t, eos)))
