"""Checks for inference.sampling: transformers' logits processors, and the distribution of the draws.

Ground truth for the scores is transformers itself: `RepetitionPenaltyLogitsProcessor`,
`TemperatureLogitsWarper`, `TopKLogitsWarper` and `TopPLogitsWarper` (filter value -inf),
and for `process_logits` a `LogitsProcessorList` of them in the order `generate` builds them
for do_sample=True (penalty, temperature, top-k, top-p: `GenerationMixin._get_logits_processor`).

Top-p's kept set is decided by comparing a float cumulative sum with 1 - top_p, so the
checks keep every such sum at least MARGIN away from the threshold (the logits are redrawn
until they are), except the rows built to sit exactly on it: equal logits with the rest at
-inf give probabilities that are exact in binary (0.25 each), whatever the summation order.
Which of several equal logits fill the last kept places is left open by the exercise, so
those rows are compared by their sorted values (how many are kept, and what).

The draws are judged by Pearson's chi-square test over many rows that share one
distribution. The student's function gets a `torch.Generator` seeded by the check (built in
its own process by a `probes.run_program` program), so every verdict is deterministic; the
false-failure rate below is what a fresh seed (a hidden check's salt) risks.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from grader import probes
from grader.checks import assert_counts
from grader.compare import check, fail

NEG_INF = float("-inf")
# Each chi-square test fails a correct sampler with probability 1e-7; no check runs more
# than 10 of them, so a check fails a correct solution with probability below 1e-6.
FALSE_FAILURE = 1e-7
# Penalty and temperature are one multiplication or division: a few float32 ulps at most.
TOL = {"atol": 1e-7, "rtol": 1e-6}
# Every cumulative mass top-p compares is at least this far from top_p (or exactly on it).
MARGIN = 1e-4
DRAWS = 20_000


# --- transformers, the ground truth --------------------------------------------------------


def hf_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    return RepetitionPenaltyLogitsProcessor(penalty=float(penalty))(input_ids, logits.clone())


def hf_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return TemperatureLogitsWarper(float(temperature))(None, logits.clone())


def hf_top_k(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    return TopKLogitsWarper(top_k, filter_value=NEG_INF, min_tokens_to_keep=min_tokens_to_keep)(None, logits.clone())


def hf_top_p(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    return TopPLogitsWarper(top_p, filter_value=NEG_INF, min_tokens_to_keep=min_tokens_to_keep)(None, logits.clone())


def hf_process(logits: torch.Tensor, input_ids: torch.Tensor | None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0,
               min_tokens_to_keep: int = 1) -> torch.Tensor:
    """What generate(do_sample=True, ...) samples from: its processors, in its order."""
    procs: list[Any] = []
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=float(repetition_penalty)))
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(float(temperature)))
    if top_k is not None and top_k != 0:
        procs.append(TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep))
    if top_p is not None and top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep))
    ids = input_ids if input_ids is not None else torch.zeros(logits.size(0), 1, dtype=torch.long)
    return LogitsProcessorList(procs)(ids, logits.clone())


# --- inputs ----------------------------------------------------------------------------------


def top_p_clear(logits: torch.Tensor, top_p: float | None, min_tokens_to_keep: int = 1) -> bool:
    """Whether every token's mass-above (in float64) is at least MARGIN away from top_p, bar
    the tokens whose fate does not depend on it: the `min_tokens_to_keep` most probable
    (always kept) and those already at -inf (-inf whether kept or removed)."""
    if top_p is None:
        return True
    probs, order = torch.softmax(logits.double(), dim=-1).sort(dim=-1, descending=True)
    above = probs.cumsum(dim=-1) - probs
    decided = torch.zeros_like(above, dtype=torch.bool)
    decided[..., :min_tokens_to_keep] = True
    decided |= torch.gather(logits, -1, order) == NEG_INF
    return bool((((above - top_p).abs() > MARGIN) | decided).all())


def clear_logits(rng: Any, shape: tuple[int, int], top_p: float | None, scale: float = 2.0,
                 ahead: dict[str, Any] | None = None, prepare: Any = None, min_tokens_to_keep: int = 1,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random logits (`prepare`d in place, e.g. with some -inf) whose top-p decision, made on
    what the steps `ahead` of top-p make of them (hf_process's arguments bar top_p), is at
    least MARGIN from its threshold; redrawn until it is, so deterministic under `rng`."""
    for _ in range(200):
        x = rng.randn(*shape, scale=scale, dtype=dtype)
        if prepare is not None:
            prepare(x)
        if top_p_clear(hf_process(x, **ahead) if ahead is not None else x, top_p, min_tokens_to_keep):
            return x
    raise RuntimeError("could not draw logits clear of the top-p threshold")


def tie_rows(v: int) -> torch.Tensor:
    """Rows whose probabilities are exact in binary: four equal logits, the rest -inf or so low
    that their probability is exactly 0 (each 0.25, cumulative sums 0.25, 0.5, 0.75, 1)."""
    a = torch.full((3, v), NEG_INF)
    a[0, :4] = 1.5
    a[1, [1, 4, 6, v - 1]] = -2.0
    a[2, :] = -1e4
    a[2, [0, 3, 5, 7]] = 0.25
    return a


def describe(x: torch.Tensor) -> str:
    return f"logits of shape {tuple(x.shape)} ({x.dtype})"


def kept_values(out: Any) -> Any:
    """Each row's values in descending order: what is kept, whichever of equal logits it is."""
    return torch.sort(out, dim=-1, descending=True).values if isinstance(out, torch.Tensor) else out


def check_tensor(got: Any, like: torch.Tensor, what: str) -> None:
    check(isinstance(got, torch.Tensor), f"{what} must return a torch.Tensor, got {type(got).__name__}")
    check(tuple(got.shape) == tuple(like.shape) and got.dtype == like.dtype,
          f"{what} must return a tensor of shape {tuple(like.shape)} and dtype {like.dtype} (the logits' own), got "
          f"shape {tuple(got.shape)} and dtype {got.dtype}")


def kept_unchanged(expect: Any, got: torch.Tensor, logits: torch.Tensor, call: Any, what: str) -> None:
    """A filter returns every kept logit unchanged and -inf elsewhere."""
    expect.compare(got, torch.where(got == NEG_INF, NEG_INF, logits), call,
                   name=f"{what}: every entry is -inf (removed) or the input logit itself, unchanged (kept)")


# --- repetition penalty and temperature ------------------------------------------------------


@pytest.mark.points(2)
def test_repetition_penalty_matches_transformers(expect, rng):
    v = 37
    logits = rng.randn(4, v, scale=3.0)
    logits[:, ::9] = 0.0  # exact zeros: divided (and still 0), never multiplied
    logits[1, 5] = NEG_INF
    ids = torch.stack([
        torch.tensor([3, 3, 3, 9, 9, 0, 36, 3, 18]),  # repeats: penalised once, not once per occurrence
        torch.tensor([5, 5, 5, 5, 5, 5, 5, 5, 5]),  # a -inf logit stays -inf
        rng.randint(0, v, (9,)),
        torch.tensor([2, 4, 6, 8, 10, 12, 14, 16, 18]),
    ])
    for penalty in (1.3, 2.0, 0.7):
        expect(lambda s, p=penalty: s.apply_repetition_penalty(logits, ids, p), truth=hf_penalty(logits, ids, penalty),
               **TOL, name=f"apply_repetition_penalty({describe(logits)} with positive, negative and zero logits, "
                           f"input_ids (4, 9) with repeated ids, penalty={penalty}) vs "
                           "transformers' RepetitionPenaltyLogitsProcessor")
    # a context of one token, B = 1
    one, ctx = rng.randn(1, 11, scale=2.0), torch.tensor([[7]])
    expect(lambda s: s.apply_repetition_penalty(one, ctx, 1.5), truth=hf_penalty(one, ctx, 1.5), **TOL,
           name="apply_repetition_penalty(logits (1, 11), input_ids [[7]], penalty=1.5) vs "
                "RepetitionPenaltyLogitsProcessor")


def test_temperature(expect, rng):
    logits = rng.randn(3, 29, scale=4.0)
    logits[0, 3] = NEG_INF
    for t in (0.5, 1.7, 0.05):
        expect(lambda s, t=t: s.apply_temperature(logits, t), truth=hf_temperature(logits, t), **TOL,
               name=f"apply_temperature({describe(logits)}, temperature={t}) vs TemperatureLogitsWarper")


# --- top-k -----------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_top_k_matches_transformers(expect, rng):
    v = 23
    logits = rng.randn(5, v, scale=2.0)
    logits[1, [2, 7, 11]] = NEG_INF  # already removed tokens
    # row 2: the 4th largest value is tied three times; row 3 all equal
    logits[2] = torch.tensor([3.0, 2.5, 2.0] + [1.0] * 3 + [0.5] * (v - 6))
    logits[2] = logits[2][rng.randint(0, 1_000_000, (v,)).argsort()]
    logits[3] = 0.75
    for k, keep in ((1, 1), (4, 1), (5, 1), (v - 1, 1), (v, 1), (v + 5, 1), (1, 3), (2, v + 4)):
        what = f"top_k_filter({describe(logits)}, top_k={k}, min_tokens_to_keep={keep})"
        got = expect(lambda s, k=k, keep=keep: s.top_k_filter(logits, k, keep), truth=hf_top_k(logits, k, keep),
                     name=f"{what} vs TopKLogitsWarper (row 2 has three logits tied at its 4th largest value, row 3 "
                          "is all equal: every token tied with the k-th largest is kept)")
        check_tensor(got, logits, what)


# --- top-p -----------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_top_p_matches_transformers(expect, rng):
    for v, top_p, keep in ((17, 0.5, 1), (17, 0.9, 1), (31, 0.1, 1), (31, 0.99, 1), (12, 0.6, 3), (12, 1.0, 1)):
        logits = clear_logits(rng, (4, v), top_p, prepare=lambda x: x.__setitem__((3, 2), NEG_INF),
                              min_tokens_to_keep=keep)
        what = f"top_p_filter({describe(logits)}, top_p={top_p}, min_tokens_to_keep={keep})"
        got = expect(lambda s, x=logits, p=top_p, k=keep: s.top_p_filter(x, p, k), truth=hf_top_p(logits, top_p, keep),
                     name=f"{what} vs TopPLogitsWarper")
        check_tensor(got, logits, what)


def test_top_p_exact_ties(expect, rng):
    """Four tokens of probability exactly 0.25: when the tokens above hold exactly top_p, the
    next one goes; the token that crosses top_p stays; min_tokens_to_keep overrides."""
    logits = tie_rows(13)
    for top_p, keep, rule in ((0.5, 1, "the 2 tokens above the 3rd hold exactly 0.5: it is removed"),
                              (0.6, 1, "the 3rd token crosses 0.6: it is kept"),
                              (0.25, 1, "the 1st token holds exactly 0.25: the 2nd is removed"),
                              (0.75, 1, "3 kept, the 4th has exactly 0.75 above it"),
                              (1.0, 1, "all 4 of nonzero probability kept, the zero-probability ones removed"),
                              (0.25, 3, "min_tokens_to_keep=3 keeps 3")):
        what = f"top_p_filter(rows of four equal logits and zero-probability tokens, top_p={top_p}, " \
               f"min_tokens_to_keep={keep}) ({rule})"
        expect(lambda s, p=top_p, k=keep: kept_values(s.top_p_filter(logits, p, k)), truth=kept_values(hf_top_p(logits, top_p, keep)),
               name=f"{what}: each row's values sorted in descending order, vs TopPLogitsWarper")
        got = expect.solution.top_p_filter(logits, top_p, keep)
        check_tensor(got, logits, what)
        kept_unchanged(expect, got, logits, lambda s, p=top_p, k=keep: s.top_p_filter(logits, p, k), what)


# --- the pipeline ----------------------------------------------------------------------------

PIPELINES = [
    # (temperature, top_k, top_p, repetition_penalty, min_tokens_to_keep)
    (0.7, None, 0.8, 1.0, 1),  # temperature decides what the nucleus holds
    (1.0, 6, 0.9, 1.0, 1),  # top-p on what top-k kept
    (1.5, 8, None, 1.3, 1),  # the penalty before the temperature
    (0.6, 10, 0.7, 1.25, 1),  # all four
    (2.0, 1, 0.5, 1.0, 2),  # min_tokens_to_keep raises top_k to 2
    (1.0, 0, 1.0, 1.0, 1),  # top_k=0 and top_p=1.0: no filter at all (as generate)
]


def pipeline_args(rng: Any, setting: tuple[Any, ...], b: int, v: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    t, k, p, pen, keep = setting
    kwargs = {"temperature": t, "top_k": k, "top_p": p, "repetition_penalty": pen, "min_tokens_to_keep": keep}
    ids = rng.randint(0, v, (b, 6))
    if p is None or p >= 1.0:
        return rng.randn(b, v, scale=2.0), ids, kwargs
    ahead = {"input_ids": ids, "temperature": t, "top_k": k, "repetition_penalty": pen, "min_tokens_to_keep": keep}
    return clear_logits(rng, (b, v), p, ahead=ahead, min_tokens_to_keep=keep), ids, kwargs


def describe_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.points(2)
def test_process_logits_matches_generate(expect, rng):
    v = 19
    for setting in PIPELINES:
        logits, ids, kwargs = pipeline_args(rng, setting, 4, v)
        expect(lambda s, x=logits, i=ids, kw=kwargs: s.process_logits(x, i, **kw), truth=hf_process(logits, ids, **kwargs),
               **TOL, name=f"process_logits({describe(logits)}, input_ids (4, 6), {describe_kwargs(kwargs)}) vs the "
                           "LogitsProcessorList generate(do_sample=True) builds (penalty, temperature, top-k, top-p)")


# --- the draws -------------------------------------------------------------------------------


def draw(module: Any, logits: torch.Tensor, seed: int, kwargs: dict[str, Any]) -> Any:
    """sample_next_token(logits, torch.Generator().manual_seed(seed), **kwargs), the generator
    made in the process that runs the solution."""
    program = [["import", "torch"], ["method", 0, "Generator", []], ["method", 1, "manual_seed", [["val", seed]]],
               ["call", "sample_next_token", [["val", logits], ["reg", 2]], {k: ["val", v] for k, v in kwargs.items()}]]
    with torch.random.fork_rng(devices=[]):  # a known mistake run in the judge must not move the judge's RNG
        return probes.run_program(module, program, [3])[0]


def pooled_counts(tokens: torch.Tensor, probs: torch.Tensor) -> tuple[list[int], list[float], list[str]]:
    """Counts per token, with the tokens whose expected count is below 5 pooled into one
    category (the chi-square approximation needs 5); tokens of probability 0 stay apart."""
    v, n = probs.numel(), tokens.numel()
    counts = torch.bincount(tokens, minlength=v).double()
    small = (probs > 0) & (probs * n < 5)
    big = ~small
    c, p = counts[big].tolist(), probs[big].tolist()
    labels = [f"token {t}" for t in range(v) if big[t]]
    if small.any():
        c.append(float(counts[small].sum()))
        p.append(float(probs[small].sum()))
        labels.append(f"the {int(small.sum())} least likely tokens together")
        if p[-1] * n < 5:  # still too rare: fold into the most likely token
            top = max(range(len(p) - 1), key=lambda i: p[i] if p[i] > 0 else -1)
            c[top] += c.pop()
            p[top] += p.pop()
            labels[top] += " (and the least likely tokens)"
            labels.pop()
    return [int(x) for x in c], p, labels


def check_draws(expect: Any, logits: torch.Tensor, seed: int, kwargs: dict[str, Any], groups: list[torch.Tensor],
                what: str) -> None:
    """Draw once per row; the rows of each group share one distribution, the chi-square test per group."""
    got = draw(expect.solution, logits, seed, kwargs)
    known = expect.mistakes(lambda m: draw(m, logits, seed, kwargs))
    b, v = logits.shape
    if not (isinstance(got, torch.Tensor) and tuple(got.shape) == (b,) and got.dtype == torch.int64):
        fail(f"{what}: sample_next_token must return an int64 tensor of shape ({b},), got "
             + (f"{got.dtype} of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__),
             got, known)
    if bool(((got < 0) | (got >= v)).any()):
        fail(f"{what}: drew ids outside [0, {v})", got, known)
    truth = torch.softmax(hf_process(logits, kwargs.get("input_ids"), **{k: x for k, x in kwargs.items()
                                                                         if k != "input_ids"}).double(), dim=-1)
    for g, rows in enumerate(groups):
        probs = truth[rows[0]]
        counts, p, labels = pooled_counts(got[rows], probs)
        shown = ", ".join(f"{x:.3f}" for x in probs.tolist())
        assert_counts(counts, p, labels=labels, false_failure=FALSE_FAILURE, actual=got, mistakes=known,
                      name=f"{what}: the tokens drawn in the {len(rows)} rows of group {g} against "
                           f"softmax(process_logits(...)) = [{shown}]")


def distinct_rows(rng: Any, v: int, top_p: float | None, ahead: dict[str, Any] | None = None) -> torch.Tensor:
    return clear_logits(rng, (2, v), top_p, scale=1.5, ahead=ahead)


@pytest.mark.points(2)
def test_draws_follow_the_processed_distribution(expect, rng):
    """Two distributions interleaved over the rows, each row drawn once: row b's token must
    follow softmax(process_logits(logits)[b])."""
    v = 12
    for setting in ((0.5, None, None, 1.0, 1), (1.0, 5, None, 1.0, 1), (1.3, None, 0.8, 1.0, 1),
                    (0.8, 7, 0.9, 1.4, 1)):
        t, k, p, pen, keep = setting
        ids2 = rng.randint(0, v, (2, 5))
        ahead = {"input_ids": ids2, "temperature": t, "top_k": k, "repetition_penalty": pen, "min_tokens_to_keep": keep}
        two = distinct_rows(rng, v, p, ahead)
        logits = two.repeat(DRAWS // 2, 1)
        ids = ids2.repeat(DRAWS // 2, 1)
        kwargs = {"input_ids": ids, "temperature": t, "top_k": k, "top_p": p, "repetition_penalty": pen,
                  "min_tokens_to_keep": keep}
        rows = torch.arange(DRAWS)
        shown = describe_kwargs({k: x for k, x in kwargs.items() if k != "input_ids"})
        check_draws(expect, logits, rng.randint(0, 2**31, (1,)).item(), kwargs, [rows[0::2], rows[1::2]],
                    f"sample_next_token({DRAWS} rows alternating between two logit vectors (V={v}), {shown})")


def test_sample_draws_from_its_generator(expect, rng):
    logits = rng.randn(64, 10)
    ids = rng.randint(0, 10, (64, 3))
    expect.seeded(lambda s: s.sample_next_token, [logits],
                  {"input_ids": ids, "temperature": 0.9, "top_k": 8, "top_p": 0.95, "repetition_penalty": 1.2},
                  name="sample_next_token(logits (64, 10), generator, temperature=0.9, top_k=8, top_p=0.95, "
                       "repetition_penalty=1.2)")


@pytest.mark.hidden
def test_hidden_float64_and_fresh_sizes(expect, rng):
    """float64 logits over a vocabulary of 50, exact ties under min_tokens_to_keep=2, top_p=0,
    a long context, and draws under a setting the public checks do not use."""
    v = 50
    logits = rng.randn(6, v, dtype=torch.float64, scale=2.5)
    ids = rng.randint(0, v, (6, 40))
    for setting in ((0.9, 20, 0.85, 1.15, 2), (1.2, None, 0.0, 1.0, 2), (0.3, v, 0.95, 0.9, 1)):
        t, k, p, pen, keep = setting
        ahead = {"input_ids": ids, "temperature": t, "top_k": k, "repetition_penalty": pen, "min_tokens_to_keep": keep}
        x = clear_logits(rng, (6, v), p, ahead=ahead, min_tokens_to_keep=keep, dtype=torch.float64)
        kwargs = {"temperature": t, "top_k": k, "top_p": p, "repetition_penalty": pen, "min_tokens_to_keep": keep}
        expect(lambda s, x=x, kw=kwargs: s.process_logits(x, ids, **kw), truth=hf_process(x, ids, **kwargs), **TOL,
               name=f"process_logits({describe(x)}, input_ids (6, 40), {describe_kwargs(kwargs)}) vs generate's "
                    "LogitsProcessorList")
    ties = tie_rows(v).double()
    for top_p in (0.5, 0.75):
        expect(lambda s, p=top_p: kept_values(s.top_p_filter(ties, p, 2)), truth=kept_values(hf_top_p(ties, top_p, 2)),
               name=f"top_p_filter(float64 rows of four equal logits, top_p={top_p}, min_tokens_to_keep=2): sorted "
                    "values vs TopPLogitsWarper")
    expect(lambda s: s.top_k_filter(logits, 7, 9), truth=hf_top_k(logits, 7, 9),
           name="top_k_filter(float64 logits (6, 50), top_k=7, min_tokens_to_keep=9) vs TopKLogitsWarper")
    row = distinct_rows(rng, 7, 0.7)
    check_draws(expect, row.repeat(DRAWS // 2, 1), rng.randint(0, 2**31, (1,)).item(),
                {"temperature": 2.5, "top_p": 0.7}, [torch.arange(0, DRAWS, 2), torch.arange(1, DRAWS, 2)],
                f"sample_next_token({DRAWS} rows alternating between two logit vectors (V=7), temperature=2.5, "
                "top_p=0.7)")
