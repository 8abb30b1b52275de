"""Checks for inference.speculative: the emitted tokens follow the target, the acceptances their law.

The models are tables: per position i a target distribution p_i and a draft distribution
q_i that do not depend on the earlier tokens (a valid pair of language models, and one whose
every law is known in closed form). The judge draws each draft token x_i from q_i, sends
target_probs, draft_probs and draft_tokens (data), and the student's `speculative_step`
gets a `torch.Generator` seeded by the check, built in its own process by a
`probes.run_program` program, so every verdict is deterministic under the check's seed.

What must hold for any correct implementation, whatever its order of draws:
- the token emitted at position j, among the sequences that reach it (n >= j), follows the
  target's p_j: p_0 for every sequence, then p_1 among those that accepted x_0, and so on up
  to the bonus distribution p_gamma among those that accepted every draft (Pearson's
  chi-square test per position);
- the number n of accepted drafts has the law P(n = k) = alpha_0 ... alpha_{k-1} (1 - alpha_k)
  (k < gamma), P(n = gamma) = alpha_0 ... alpha_{gamma-1}, with alpha_i = sum_x min(p_i, q_i)
  (chi-square), and the mean number of emitted tokens is `expected_tokens_per_step`;
- exact structure: the accepted prefix is the drafts themselves, then one token, then -1.

Each statistical test fails a correct solution with probability FALSE_FAILURE = 1e-7; no check
runs more than 10 of them, so a check fails a correct solution with probability below 1e-6.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from grader import probes
from grader.checks import assert_counts, assert_mean
from grader.compare import fail

FALSE_FAILURE = 1e-7
# alpha and E are sums of at most a few dozen products of probabilities: a few ulps.
TOL32 = {"atol": 1e-6, "rtol": 1e-5}
TOL64 = {"atol": 1e-12, "rtol": 1e-10}
ROWS = 20_000  # sequences per statistical call, two groups of 10 000


# --- the models ------------------------------------------------------------------------------


def random_probs(rng: Any, n: int, v: int, scale: float = 1.2) -> torch.Tensor:
    return torch.softmax(rng.randn(n, v, dtype=torch.float64, scale=scale), dim=-1)


def imperfect_draft(rng: Any, p: torch.Tensor, noise: float = 1.0) -> torch.Tensor:
    """A draft that roughly agrees with the target: p's log-probs plus noise, renormalised."""
    return torch.softmax(p.log() + rng.randn(*p.shape, dtype=torch.float64, scale=noise), dim=-1)


def with_zeros(p: torch.Tensor, zero: list[int]) -> torch.Tensor:
    p = p.clone()
    p[..., zero] = 0.0
    return p / p.sum(dim=-1, keepdim=True)


class Pair:
    """Target tables p (gamma + 1, V) and draft tables q (gamma, V), float64."""

    def __init__(self, p: torch.Tensor, q: torch.Tensor, what: str):
        self.p, self.q, self.what = p, q, what
        self.gamma, self.vocab = q.shape

    @property
    def alpha(self) -> torch.Tensor:
        return torch.minimum(self.p[:-1], self.q).sum(dim=-1)

    def law_of_n(self) -> list[float]:
        a = self.alpha.tolist()
        law, reach = [], 1.0
        for k in range(self.gamma):
            law.append(reach * (1 - a[k]))
            reach *= a[k]
        return law + [reach]


def batch(rng: Any, pairs: list[Pair], rows: int, dtype: torch.dtype = torch.float32
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows b with b % len(pairs) == g use pair g; each draft token drawn from its q."""
    g = len(pairs)
    target = torch.stack([pairs[b % g].p for b in range(g)]).repeat(rows // g, 1, 1).to(dtype)
    draft = torch.stack([pairs[b % g].q for b in range(g)]).repeat(rows // g, 1, 1).to(dtype)
    tokens = torch.empty(rows, pairs[0].gamma, dtype=torch.long)
    for k, pair in enumerate(pairs):
        for i in range(pair.gamma):
            tokens[k::g, i] = torch.multinomial(pair.q[i], rows // g, replacement=True, generator=rng.torch)
    return target, draft, tokens


# --- calling the student ---------------------------------------------------------------------


def step(module: Any, target: torch.Tensor, draft: torch.Tensor, tokens: torch.Tensor, seed: int) -> Any:
    """speculative_step(target, draft, tokens, torch.Generator().manual_seed(seed)), the
    generator made in the process that runs the solution."""
    program = [["import", "torch"], ["method", 0, "Generator", []], ["method", 1, "manual_seed", [["val", seed]]],
               ["call", "speculative_step", [["val", target], ["val", draft], ["val", tokens], ["reg", 2]]]]
    with torch.random.fork_rng(devices=[]):  # a known mistake run in the judge must not move the judge's RNG
        return probes.run_program(module, program, [3])[0]


def structure_problem(got: Any, drafts: torch.Tensor, vocab: int) -> str | None:
    """Why `got` is not a valid (tokens, n) for these drafts, or None."""
    b, gamma = drafts.shape
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        return f"must return a pair (tokens, n), got {type(got).__name__}"
    tokens, n = got
    for name, x, shape in (("tokens", tokens, (b, gamma + 1)), ("n", n, (b,))):
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.int64 and tuple(x.shape) == shape):
            return (f"`{name}` must be an int64 tensor of shape {shape}, got "
                    + (f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__))
    if bool(((n < 0) | (n > gamma)).any()):
        bad = int(((n < 0) | (n > gamma)).nonzero()[0])
        return f"n[{bad}] = {int(n[bad])} is not a number of accepted drafts in 0 .. {gamma}"
    pos = torch.arange(gamma + 1)
    before, at = pos < n[:, None], pos == n[:, None]
    wrong = before[:, :gamma] & (tokens[:, :gamma] != drafts)
    if bool(wrong.any()):
        r, i = (int(v) for v in wrong.nonzero()[0])
        return (f"row {r}: n = {int(n[r])} drafts were accepted, but tokens[{r}, {i}] = {int(tokens[r, i])} is not "
                f"the draft token {int(drafts[r, i])}: the first n entries are the accepted drafts themselves")
    drawn = tokens[at]
    if bool(((drawn < 0) | (drawn >= vocab)).any()):
        r = int(((drawn < 0) | (drawn >= vocab)).nonzero()[0])
        return (f"row {r}: n = {int(n[r])}, but tokens[{r}, {int(n[r])}] = {int(drawn[r])} is not a token id in "
                f"0 .. {vocab - 1}: every step emits one more token after the accepted drafts (the resampled one "
                f"after a rejection, the bonus token from target_probs[:, {gamma}] when all {gamma} were accepted)")
    after = pos > n[:, None]
    if bool((tokens[after] != -1).any()):
        r = int(((tokens != -1) & after).any(dim=1).nonzero()[0])
        return f"row {r}: n = {int(n[r])}, so tokens[{r}, {int(n[r]) + 1}:] must be -1, got {tokens[r].tolist()}"
    return None


def run_checked(expect: Any, target: torch.Tensor, draft: torch.Tensor, tokens: torch.Tensor, seed: int,
                what: str) -> tuple[torch.Tensor, torch.Tensor, Any]:
    got = step(expect.solution, target, draft, tokens, seed)
    known = expect.mistakes(lambda m: step(m, target, draft, tokens, seed))
    problem = structure_problem(got, tokens, target.shape[-1])
    if problem:
        fail(f"{what}: {problem}", got, known)
    return got[0], got[1], known


def pooled(counts: torch.Tensor, probs: torch.Tensor, labels: list[str]) -> tuple[list[int], list[float], list[str]]:
    """Categories whose expected count is below 5 pooled into one (the chi-square test needs 5);
    categories of probability 0 stay apart (any draw of one fails)."""
    n = float(counts.sum())
    small = (probs > 0) & (probs * n < 5)
    c, p = counts[~small].tolist(), probs[~small].tolist()
    kept = [lab for lab, s in zip(labels, small.tolist()) if not s]
    if small.any():
        top = int(torch.where(small, -1.0, probs).argmax())  # the most likely category absorbs them
        i = kept.index(labels[top])
        c[i] += float(counts[small].sum())
        p[i] += float(probs[small].sum())
        kept[i] += " (with the rarest ones)"
    return [int(x) for x in c], p, kept


def check_positions(pair: Pair, tokens: torch.Tensor, n: torch.Tensor, rows: slice, known: Any, got: Any,
                    what: str, positions: Any = None) -> None:
    """The token at position j, where n >= j, follows p_j (positions reached by fewer than
    100 sequences are skipped)."""
    for j in positions if positions is not None else range(pair.gamma + 1):
        reach = n[rows] >= j
        emitted = tokens[rows][reach, j]
        if emitted.numel() < 100:
            continue
        counts = torch.bincount(emitted, minlength=pair.vocab).double()
        c, p, labels = pooled(counts, pair.p[j], [f"token {t}" for t in range(pair.vocab)])
        source = "the bonus token, after all drafts were accepted" if j == pair.gamma else \
            f"accepted draft or resampled token, among the sequences that accepted the first {j} drafts"
        shown = ", ".join(f"{x:.3f}" for x in pair.p[j].tolist())
        assert_counts(c, p, labels=labels, false_failure=FALSE_FAILURE, actual=got, mistakes=known,
                      name=f"{what}, {pair.what}: the token emitted at position {j} ({source}), over "
                           f"{emitted.numel()} sequences, against the target's p_{j} = [{shown}]")


def check_acceptances(pair: Pair, n: torch.Tensor, rows: slice, known: Any, got: Any, what: str) -> None:
    """The number of accepted drafts has its law, from alpha_i = sum min(p_i, q_i)."""
    counts = torch.bincount(n[rows], minlength=pair.gamma + 1).double()
    law = torch.tensor(pair.law_of_n(), dtype=torch.float64)
    c, p, labels = pooled(counts, law, [f"n = {k}" for k in range(pair.gamma + 1)])
    alphas = ", ".join(f"{a:.3f}" for a in pair.alpha.tolist())
    assert_counts(c, p, labels=labels, false_failure=FALSE_FAILURE, actual=got, mistakes=known,
                  name=f"{what}, {pair.what}: the number of accepted drafts n over {int(counts.sum())} sequences "
                       f"against P(n = k) = alpha_0 ... alpha_(k-1) (1 - alpha_k), alpha = sum_x min(p_i(x), q_i(x))"
                       f" = [{alphas}]")


def seed_of(rng: Any) -> int:
    return int(rng.randint(0, 2**31, (1,)))


# --- the models the checks use ---------------------------------------------------------------


def agreeing_pair(rng: Any, gamma: int, v: int) -> Pair:
    p = random_probs(rng, gamma + 1, v)
    return Pair(p, imperfect_draft(rng, p[:-1]), f"a draft roughly agreeing with the target (gamma={gamma}, V={v})")


def disjointish_pair(rng: Any, gamma: int, v: int) -> Pair:
    """The draft never proposes tokens 0 and 1 (they come only from the residual), and the
    target never emits the last token (a draft of it is always rejected)."""
    p = with_zeros(random_probs(rng, gamma + 1, v, scale=0.8), [v - 1])
    q = with_zeros(imperfect_draft(rng, random_probs(rng, gamma, v, scale=0.8), 0.5), [0, 1])
    return Pair(p, q, f"q(0) = q(1) = 0 and p({v - 1}) = 0 (gamma={gamma}, V={v})")


# --- checks ----------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_closed_forms(expect, rng):
    for dtype, tol in ((torch.float32, TOL32), (torch.float64, TOL64)):
        p = random_probs(rng, 5 * 5, 11).reshape(5, 5, 11)
        q = torch.cat([imperfect_draft(rng, p[:2, :4]), random_probs(rng, 3 * 4, 11).reshape(3, 4, 11)])
        p, q = p.to(dtype), q.to(dtype)
        truth = torch.minimum(p[:, :4], q).sum(dim=-1)
        expect(lambda s, p=p, q=q: s.acceptance_rate(p[:, :4], q), truth=truth, **tol,
               name=f"acceptance_rate(target (5, 4, 11), draft (5, 4, 11), {dtype}) vs sum_x min(p(x), q(x))")
        e = 1 + torch.cumprod(truth, dim=-1).sum(dim=-1)
        expect(lambda s, p=p, q=q: s.expected_tokens_per_step(p, q), truth=e, **tol,
               name=f"expected_tokens_per_step(target (5, 5, 11), draft (5, 4, 11), {dtype}) vs "
                    "1 + sum_k alpha_0 ... alpha_(k-1)")
    # edge cases: a perfect draft accepts everything, a disjoint one nothing; gamma = 1, V = 2
    same = random_probs(rng, 4, 7).reshape(1, 4, 7)
    expect(lambda s: s.acceptance_rate(same[:, :3], same[:, :3]), truth=torch.ones(1, 3, dtype=torch.float64), **TOL64,
           name="acceptance_rate(p, p) (the draft is the target) vs 1")
    expect(lambda s: s.expected_tokens_per_step(same, same[:, :3]), truth=torch.tensor([4.0], dtype=torch.float64),
           **TOL64, name="expected_tokens_per_step(p, p) with gamma=3 vs gamma + 1 = 4 (every draft accepted, then the "
                         "bonus token)")
    p2 = torch.tensor([[[1.0, 0.0], [0.3, 0.7]]], dtype=torch.float64)
    q2 = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    expect(lambda s: s.acceptance_rate(p2[:, :1], q2), truth=torch.zeros(1, 1, dtype=torch.float64), **TOL64,
           name="acceptance_rate(p = [1, 0], q = [0, 1]) (disjoint supports) vs 0")
    expect(lambda s: s.expected_tokens_per_step(p2, q2), truth=torch.tensor([1.0], dtype=torch.float64), **TOL64,
           name="expected_tokens_per_step(p = [[1, 0], [0.3, 0.7]], q = [[0, 1]]) (gamma=1, V=2, disjoint) vs 1")


def test_extreme_drafts(expect, rng):
    """A perfect draft (q = p) is always accepted and the bonus token follows; a draft whose
    support is disjoint from the target's is always rejected and the token comes from p."""
    gamma, v = 3, 6
    p = random_probs(rng, gamma + 1, v)
    perfect = Pair(p, p[:-1].clone(), f"q = p (a perfect draft, gamma={gamma}, V={v})")
    target, draft, tokens = batch(rng, [perfect], 2000)
    what = f"speculative_step(target and draft (2000 sequences), {perfect.what})"
    seed = seed_of(rng)
    got_tokens, n, known = run_checked(expect, target, draft, tokens, seed, what)
    expect.compare(n, torch.full((2000,), gamma), lambda m: step(m, target, draft, tokens, seed)[1],
                   name=f"{what}: n (every draft is accepted: min(1, p(x) / q(x)) = 1)")
    expect.compare((got_tokens != -1).sum(dim=1), torch.full((2000,), gamma + 1),
                   lambda m: (step(m, target, draft, tokens, seed)[0] != -1).sum(dim=1),
                   name=f"{what}: the number of tokens emitted (the {gamma} drafts and the bonus token)")
    check_positions(perfect, got_tokens, n, slice(None), known, (got_tokens, n), what)

    a, b = with_zeros(random_probs(rng, gamma + 1, v), [0, 1, 2]), with_zeros(random_probs(rng, gamma, v), [3, 4, 5])
    disjoint = Pair(a, b, f"p and q with disjoint supports (gamma={gamma}, V={v})")
    target, draft, tokens = batch(rng, [disjoint], 2000, torch.float64)
    what = f"speculative_step(float64 target and draft (2000 sequences), {disjoint.what})"
    seed = seed_of(rng)
    got_tokens, n, known = run_checked(expect, target, draft, tokens, seed, what)
    expect.compare(n, torch.zeros(2000, dtype=torch.long), lambda m: step(m, target, draft, tokens, seed)[1],
                   name=f"{what}: n (every draft is rejected: p(x) = 0)")
    check_positions(disjoint, got_tokens, n, slice(None), known, (got_tokens, n), what)


@pytest.mark.points(3)
def test_emitted_tokens_follow_the_target(expect, rng):
    """Two pairs of models over interleaved sequences; at every position the emitted token
    follows the target's distribution there."""
    gamma, v = 3, 9
    pairs = [agreeing_pair(rng, gamma, v), disjointish_pair(rng, gamma, v)]
    target, draft, tokens = batch(rng, pairs, ROWS)
    what = f"speculative_step({ROWS} sequences, gamma={gamma}, V={v}, float32)"
    got_tokens, n, known = run_checked(expect, target, draft, tokens, seed_of(rng), what)
    for g, pair in enumerate(pairs):
        check_positions(pair, got_tokens, n, slice(g, None, 2), known, (got_tokens, n), what)


@pytest.mark.points(2)
def test_acceptances_follow_the_closed_form(expect, rng):
    gamma, v = 4, 7
    pairs = [agreeing_pair(rng, gamma, v), disjointish_pair(rng, gamma, v)]
    target, draft, tokens = batch(rng, pairs, ROWS)
    what = f"speculative_step({ROWS} sequences, gamma={gamma}, V={v}, float32)"
    got_tokens, n, known = run_checked(expect, target, draft, tokens, seed_of(rng), what)
    for g, pair in enumerate(pairs):
        check_acceptances(pair, n, slice(g, None, 2), known, (got_tokens, n), what)
        law = torch.tensor(pair.law_of_n(), dtype=torch.float64)
        k = torch.arange(gamma + 1, dtype=torch.float64)
        mean = float((law * (k + 1)).sum())
        std = math.sqrt(float((law * (k + 1) ** 2).sum()) - mean**2)
        assert_mean((n[g::2] + 1).double(), mean, std, false_failure=FALSE_FAILURE, actual=(got_tokens, n),
                    mistakes=known, name=f"{what}, {pair.what}: the tokens emitted per step (n + 1) against "
                                         f"expected_tokens_per_step = 1 + sum_k alpha_0 ... alpha_(k-1) = {mean:.4f}")


def test_draws_from_its_generator(expect, rng):
    pair = agreeing_pair(rng, 3, 8)
    target, draft, tokens = batch(rng, [pair], 64)
    expect.seeded(lambda s: s.speculative_step, [target, draft, tokens], {},
                  name="speculative_step(target (64, 4, 8), draft (64, 3, 8), draft_tokens (64, 3), generator)")


@pytest.mark.hidden
def test_hidden_longer_drafts_float64(expect, rng):
    """gamma = 5 and V = 11 in float64, with a sharper target and a draft that disagrees more."""
    gamma, v = 5, 11
    p = random_probs(rng, gamma + 1, v, scale=2.0)
    pairs = [Pair(p, imperfect_draft(rng, p[:-1], 0.6), f"a sharp target (gamma={gamma}, V={v})"),
             disjointish_pair(rng, gamma, v)]
    target, draft, tokens = batch(rng, pairs, ROWS, torch.float64)
    what = f"speculative_step({ROWS} sequences, gamma={gamma}, V={v}, float64)"
    got_tokens, n, known = run_checked(expect, target, draft, tokens, seed_of(rng), what)
    for g, pair in enumerate(pairs):
        check_acceptances(pair, n, slice(g, None, 2), known, (got_tokens, n), what)
        check_positions(pair, got_tokens, n, slice(g, None, 2), known, (got_tokens, n), what, positions=(0, 1, gamma))
