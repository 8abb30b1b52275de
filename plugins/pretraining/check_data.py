"""Checks for pretraining.data: random windows from a token file, document packing, positions.

Ground truth is the stated convention, recomputed in the judge by its own code: the seeded
`torch.randint` draw of the start indices, indexing into the data for the windows, a flat
stream cut into rows for packing, and a plain loop for the position ids. Token data is a
permutation of distinct ids (uint16 ones spanning 0..65535, int32 ones above 65535), so every
window's start index can be read off its first token: the windows check and the start-index
statistics judge any draw, not only the stated one.

The memory map must live in the student's process: `load_tokens` and then `get_batch` on its
result run there in one `probes.run_program` program, and only the path, a few attributes and
the batch cross. The token files are written by the judge into a temporary directory. The
known mistakes run the same program in the judge, so a wrong attribute is named too.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from grader import probes
from grader.checks import assert_counts, assert_rate, binomial_bounds
from grader.compare import check, fail, raises

# Start-index statistics: a flagged count has probability at most TAIL for a correct solution,
# in each tail of each start's count and for the chi-square, so a correct solution fails with
# probability below 97 * 2 * TAIL + TAIL < 2e-8.
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
def test_get_batch_matches_seeded_draw(expect, rng):
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
        # The dtype is left to the comparison, which names the known mistake behind a wrong one.
        expect(lambda m, d=data, b=batch_size, c=context_length, s=seed, w=what:
               _xy(m.get_batch(d, b, c, s), w, b, c, check_dtype=False),
               truth=expected_batch(data, batch_size, context_length, seed),
               name=f"{what} vs starts = torch.randint(0, len(data) - context_length, (batch_size,), "
                    "generator=torch.Generator().manual_seed(seed)) (items: x, y)")


@pytest.mark.points(2)
def test_get_batch_windows_and_shift(expect, rng):
    # Whatever the draw: every row of x is a window of data, y is the same window one token later.
    for data, batch_size, context_length in ((permutation_data(rng, 2000), 64, 32),
                                             (permutation_data(rng, 400, np.int32), 16, 9)):
        seed = int(rng.np.integers(0, 2**31))
        what = f"get_batch({_describe(data)}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
        x, y = _xy(expect.solution.get_batch(data, batch_size, context_length, seed), what, batch_size, context_length)
        window_starts(data, x, y, what)


@pytest.mark.points(2)
def test_get_batch_start_statistics(expect, rng):
    # 97 valid starts, 200 draws of each expected: each start's count, the first's and the last's
    # included, must lie within exact binomial bounds, and the counts must pass a chi-square test.
    # The counts are compared with the known mistakes' for the same draw, so a mistake is named.
    data = permutation_data(rng, 100)
    context_length = 3
    n_starts = len(data) - context_length
    batch_size = DRAWS_PER_START * n_starts
    seed = int(rng.np.integers(0, 2**31))
    what = f"get_batch({_describe(data)}, batch_size={batch_size}, context_length={context_length}, seed={seed})"

    def start_counts(m: Any) -> list[int]:
        x, y = _xy(m.get_batch(data, batch_size, context_length, seed), what, batch_size, context_length)
        return np.bincount(window_starts(data, x, y, what), minlength=n_starts).tolist()

    counts = start_counts(expect.solution)
    where = (f"{what}: the valid starts are 0 .. len(data) - context_length - 1 = {n_starts - 1}, each drawn about "
             f"{batch_size / n_starts:g} times in {batch_size} draws")
    for s, name in ((n_starts - 1, "the LAST valid start"), (0, "the first valid start")):
        assert_rate(counts[s], batch_size, 1 / n_starts, false_failure=2 * TAIL, actual=counts[s],
                    mistakes=expect.mistakes(lambda m, s=s: start_counts(m)[s]),
                    name=f"{where}; {name}, {s}, was drawn (torch.randint(low, high) never returns high: the "
                         "starts come from torch.randint(0, len(data) - context_length, ...))")
    lo, hi = binomial_bounds(batch_size, 1 / n_starts, 2 * TAIL)
    outside = [s for s, c in enumerate(counts) if not lo <= c <= hi]
    if outside:
        fail(f"{where}; {len(outside)} starts were drawn outside [{lo}, {hi}] times (a correct solution draws a "
             f"given start outside with probability below {2 * TAIL:g}), e.g. start {outside[0]} drawn "
             f"{counts[outside[0]]} times: the starts are not uniform over every valid start",
             counts, expect.mistakes(start_counts))
    assert_counts(counts, [1 / n_starts] * n_starts, labels=[f"start {s}" for s in range(n_starts)],
                  false_failure=TAIL, actual=counts, mistakes=expect.mistakes(start_counts),
                  name=f"{where}; the starts are not uniform over every valid start")


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


def _check_memmap(expect: Any, path: str, dtype: str | None, data: np.ndarray, batch_size: int, context_length: int,
                  seed: int) -> None:
    """load_tokens on the file at `path`, then get_batch on its result, in the solution's process."""
    call = "load_tokens(path)" if dtype is None else f"load_tokens(path, dtype={dtype!r})"
    what = f"{call} on a file written by np.array(ids, dtype=np.{data.dtype}).tofile(path) ({len(data)} tokens)"
    program = memmap_program(path, dtype, batch_size, context_length, seed)

    def loaded(m: Any) -> list[Any]:
        return probes.run_program(m, program, [2, 4, 6, 7, 0, 8])

    results = loaded(expect.solution)
    kind, writeable, dtype_str, shape, contents, got = results

    def verdict(ok: bool, i: int, message: str) -> None:
        # Item i of the program's results, compared with the known mistakes' when wrong.
        if not ok:
            fail(message, results[i], expect.mistakes(lambda m: loaded(m)[i]))

    verdict(kind == "memmap", 0,
            f"{what}: returned a {kind}, expected a numpy.memmap: np.memmap(path, dtype=dtype, mode='r') maps the "
            "file instead of reading all of it into memory (np.fromfile and np.load read the whole file)")
    verdict(dtype_str == data.dtype.str, 2,
            f"{what}: the memmap's dtype is {np.dtype(dtype_str)}, expected {data.dtype}: pass `dtype` to np.memmap")
    verdict(tuple(shape) == data.shape, 3, f"{what}: the memmap's shape is {tuple(shape)}, expected {data.shape}")
    verdict(not writeable, 1,
            f"{what}: the memmap is writable: np.memmap's default mode is 'r+', which opens the token file for "
            "writing; open it read-only with mode='r'")
    # A copy: in direct mode `contents` is the read-only memmap itself.
    expect.compare(np.array(contents), data, lambda m: np.array(loaded(m)[4]),
                   name=f"{what}: the memmap's contents vs the ids written")
    call = f"get_batch({call}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
    expect.compare(_xy(got, call, batch_size, context_length), expected_batch(data, batch_size, context_length, seed),
                   lambda m: tuple(m.get_batch(data, batch_size, context_length, seed)), name=f"{call} (items: x, y)")


@pytest.mark.points(2)
def test_load_tokens_memmap_and_get_batch(expect, rng, shared_dir):
    # Files as a data pipeline writes them: np.array(ids, dtype=...).tofile(path). The default
    # dtype (uint16) and an explicit "int32" for ids above 65535. The solution reads them
    # from shared_dir, the one directory of the judge's that its sandbox shows it.
    for dtype, data, batch_size, context_length in (
        (None, permutation_data(rng, 3000), 12, 64),
        ("int32", permutation_data(rng, 700, np.int32), 7, 20),
    ):
        path = str(shared_dir / f"train_{data.dtype}.bin")
        data.tofile(path)
        _check_memmap(expect, path, dtype, data, batch_size, context_length, int(rng.np.integers(0, 2**31)))


def test_get_batch_edge_cases(expect, rng):
    # One token more than the context: the only start is 0, every row is the whole data.
    data = permutation_data(rng, 17)
    what = f"get_batch({_describe(data)}, batch_size=4, context_length=16, seed=7): the only valid start is 0"
    expect(lambda m, d=data: _xy(m.get_batch(d, 4, 16, 7), what, 4, 16), truth=expected_batch(data, 4, 16, 7),
           name=f"{what} (items: x, y)")
    for n, context_length in ((16, 16), (5, 16), (1, 1)):
        short = permutation_data(rng, n)
        check(raises(lambda d=short, c=context_length: expect.solution.get_batch(d, 2, c, 0)),
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

    def rng_states(m: Any) -> list[torch.Tensor]:
        with torch.random.fork_rng(devices=[]):  # a known mistake run in the judge must not reseed the judge
            return probes.run_program(m, program, [before, after])

    state_before, state_after = rng_states(expect.solution)
    if not torch.equal(state_before, state_after):
        fail(f"get_batch({_describe(data)}, batch_size=8, context_length=10, seed=1234) changed torch's global random "
             "state (torch.manual_seed, or torch.randint without generator=): draw from your own "
             "torch.Generator().manual_seed(seed) and leave the global generator to the training loop",
             state_after, expect.mistakes(lambda m: rng_states(m)[1]))


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


def _check_pack(expect: Any, documents: list[list[int]], eos_id: int, context_length: int, about: str) -> None:
    expected = expected_rows(documents, eos_id, context_length)
    stream = sum(len(d) + 1 for d in documents if d)
    shown = repr(documents) if len(repr(documents)) <= 160 else f"{len(documents)} documents"
    n_rows, dropped = expected.shape[0], stream % (context_length + 1)
    what = (f"pack_documents({shown}, eos_id={eos_id}, context_length={context_length}) ({about}); the stream has "
            f"{stream} tokens: {n_rows} whole row{'' if n_rows == 1 else 's'} of {context_length + 1}, "
            + (f"the last {dropped} dropped" if dropped else "nothing dropped"))
    expect(lambda m: m.pack_documents(documents, eos_id, context_length), truth=expected, name=what)


@pytest.mark.points(3)
def test_pack_documents_matches_stream(expect, rng):
    for n, context_length, vocab, eos_id in ((40, 16, 50257, 50256), (25, 7, 1000, 0), (60, 32, 300, 17)):
        documents = random_documents(rng, n, context_length, vocab, eos_id)
        _check_pack(expect, documents, eos_id, context_length, "empty ones, short ones and ones longer than a row")


@pytest.mark.points(2)
def test_pack_documents_edge_cases(expect):
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
        _check_pack(expect, documents, eos, context_length, about)


def expected_positions(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    out = torch.zeros_like(tokens)
    for r in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1]):
            out[r, t] = 0 if tokens[r, t - 1] == eos_id else out[r, t - 1] + 1
    return out


@pytest.mark.points(2)
def test_document_position_ids(expect, rng):
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
        expect(lambda m, t=tokens: m.document_position_ids(t, eos), truth=expected_positions(tokens, eos),
               name=f"document_position_ids({shown}, eos_id={eos}) ({about})")


@pytest.mark.hidden
def test_hidden_high_ids_and_fresh_sizes(expect, rng):
    """Ids and sizes the public checks do not use, drawn fresh for any seed: get_batch with
    batch_size 1 on uint16 ids all above 32767 (a conversion through int16 wraps every one)
    and with an odd batch on uint32 ids all above 2**31 (a conversion through int32 wraps
    every one), both with a context length anywhere from 1 to the longest the data allows;
    then pack_documents with a fresh context length and eos_id 65535, the largest uint16 id,
    and document_position_ids on those rows."""
    for dtype, low, batch_size in ((np.uint16, 2**15, 1), (np.uint32, 2**31, 2 * int(rng.np.integers(1, 20)) + 1)):
        n = int(rng.np.integers(20, 400))
        data = (rng.np.permutation(2**15)[:n] + low).astype(dtype)  # distinct ids in [low, low + 2**15)
        context_length = int(rng.np.integers(1, n))
        seed = int(rng.np.integers(0, 2**31))
        what = f"get_batch({_describe(data)} of ids >= {low}, batch_size={batch_size}, context_length={context_length}, seed={seed})"
        expect(lambda m, d=data, b=batch_size, c=context_length, s=seed, w=what: _xy(m.get_batch(d, b, c, s), w, b, c),
               truth=expected_batch(data, batch_size, context_length, seed), name=f"{what} (items: x, y)")
    eos, context_length = 65535, int(rng.np.integers(2, 50))
    documents = random_documents(rng, int(rng.np.integers(5, 40)), context_length, 65536, eos)
    _check_pack(expect, documents, eos, context_length, "random documents, eos_id the largest uint16 id")
    x = expected_rows(documents, eos, context_length)[:, :-1].contiguous()
    expect(lambda m: m.document_position_ids(x, eos), truth=expected_positions(x, eos),
           name=f"document_position_ids(x of shape {tuple(x.shape)}, eos_id={eos}) (x = rows[:, :-1] of the packing above)")
