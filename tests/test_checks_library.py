"""The check library (grader.checks): `expect` and the shared properties, on small namespaces
standing in for a solution and its known mistakes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from grader.checks import (
    Expect,
    assert_counts,
    assert_mean,
    assert_rate,
    binomial_bounds,
    future_changed,
)
from grader.compare import CheckFailure
from grader.rng import Rng


def expecting(solution, **mutants) -> Expect:
    return Expect(SimpleNamespace(**solution), lambda: {k: (f"the {k} mistake", SimpleNamespace(**v))
                                                         for k, v in mutants.items()})


def test_expect_passes_and_returns_the_solutions_result():
    e = expecting({"f": lambda x: x * 2})
    x = torch.arange(3.0)
    assert torch.equal(e(lambda s: s.f(x), truth=x * 2, atol=0, rtol=0, name="f(x)"), x * 2)
    assert e(lambda s: s.f(3), truth=6, name="f(3)") == 6  # exact without a tolerance


def test_expect_names_the_mistake_the_result_equals_and_only_on_failure():
    calls = []

    def loaded():
        calls.append(1)
        return {"triple": ("multiplies by 3", SimpleNamespace(f=lambda x: x * 3)),
                "square": ("squares", SimpleNamespace(f=lambda x: x * x))}

    x = torch.arange(4.0)
    Expect(SimpleNamespace(f=lambda x: x * 2), loaded)(lambda s: s.f(x), truth=x * 2, atol=1e-6, rtol=0, name="f(x)")
    assert calls == [], "known mistakes are loaded only when a comparison fails"
    with pytest.raises(CheckFailure) as failure:
        Expect(SimpleNamespace(f=lambda x: x * 3), loaded)(lambda s: s.f(x), truth=x * 2, atol=1e-6, rtol=0,
                                                           name="f(x)")
    assert failure.value.mistake == "triple" and "multiplies by 3" in str(failure.value)
    assert str(failure.value).startswith("f(x): ")
    with pytest.raises(CheckFailure) as failure:
        Expect(SimpleNamespace(f=lambda x: x + 1), loaded)(lambda s: s.f(x), truth=x * 2, name="f(x)")
    assert failure.value.mistake == "", "a result that is no known mistake's names none"


def causal_model(ns):
    return lambda x: ns.mix(x)


def test_causal_passes_a_causal_map_and_catches_one_that_sees_the_future():
    rng = Rng(0)
    ids = rng.randint(0, 11, (2, 7))
    causal = {"mix": lambda x: x.float().cumsum(1)}
    leaky = {"mix": lambda x: x.float().cumsum(1) + x.float().sum(1, keepdim=True)}
    expecting(causal).causal(causal_model, ids, t=3, rng=rng, vocab_size=11, name="mix", output_shape=(2, 7))
    with pytest.raises(CheckFailure) as failure:
        expecting(leaky, sees_the_future=leaky).causal(causal_model, ids, t=3, rng=rng, vocab_size=11, name="mix")
    assert "outputs at positions 0..2 after changing the inputs at positions 3..6" in str(failure.value)
    assert failure.value.mistake == "sees_the_future"
    with pytest.raises(CheckFailure, match="must return a tensor of shape"):
        expecting({"mix": lambda x: x.float()[:, :1]}).causal(causal_model, ids, t=3, rng=rng, vocab_size=11,
                                                              name="mix", output_shape=(2, 7))


def test_future_changed_changes_every_later_position_and_nothing_before():
    rng = Rng(1)
    ids = rng.randint(0, 5, (3, 9))
    changed = future_changed(ids, 4, rng, vocab_size=5)
    assert torch.equal(changed[:, :4], ids[:, :4]) and (changed[:, 4:] != ids[:, 4:]).all()
    assert changed.min() >= 0 and changed.max() < 5
    x = rng.randn(2, 6, 3)
    moved = future_changed(x, 2, rng)
    assert torch.equal(moved[:, :2], x[:, :2]) and (moved[:, 2:] != x[:, 2:]).all()


class _WrongBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.square()

    @staticmethod
    def backward(ctx, g):
        return g  # should be 2 x g


def test_gradients_compares_output_and_every_input_gradient():
    x = Rng(2).randn(3, 4)
    expecting({"sq": lambda x: x * x}).gradients(lambda s: s.sq, [x], truth=torch.square, name="sq", atol=1e-6,
                                                 rtol=1e-6)
    with pytest.raises(CheckFailure, match="sq: the gradient with respect to input 0"):
        expecting({"sq": _WrongBackward.apply}).gradients(lambda s: s.sq, [x], truth=torch.square, name="sq",
                                                          atol=1e-6, rtol=1e-6)
    with pytest.raises(CheckFailure, match="no gradient reached input 0"):
        expecting({"sq": lambda x: x.detach() ** 2}).gradients(lambda s: s.sq, [x], truth=torch.square, name="sq",
                                                               atol=1e-6, rtol=1e-6, output=False)


def test_in_place_checks_what_changes_and_what_must_not():
    def relu_overwriting(x, g):
        g[x < 0] = 0
        return g

    x, g = torch.tensor([-1.0, 2.0]), torch.tensor([5.0, 6.0])
    ok = {"back": lambda x, g: g * (x > 0)}
    assert torch.equal(expecting(ok).in_place(lambda s: s.back, [x, g], name="back"), torch.tensor([0.0, 6.0]))
    with pytest.raises(CheckFailure, match="argument 1 after the call .your code must not modify its inputs"):
        expecting({"back": relu_overwriting}).in_place(lambda s: s.back, [x, g], name="back")
    assert torch.equal(g, torch.tensor([5.0, 6.0])), "the check works on copies of the arguments"

    fill = {"fill_": lambda w: w.fill_(1.0)}
    expecting(fill).in_place(lambda s: s.fill_, [torch.zeros(3)], name="fill_", changes={0: torch.ones(3)})
    with pytest.raises(CheckFailure, match="argument 0 after the call .it is changed in place"):
        expecting({"fill_": lambda w: w + 1}).in_place(lambda s: s.fill_, [torch.zeros(3)], name="fill_",
                                                       changes={0: torch.ones(3)})


@pytest.mark.parametrize(("n", "p"), [(50, 0.3), (1000, 0.05), (20000, 0.15)])
def test_binomial_bounds_are_exact_and_tight(n: int, p: float):
    ff = 1e-6
    lo, hi = binomial_bounds(n, p, ff)
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)] if n <= 1000 else None
    if pmf is not None:
        assert sum(pmf[:lo]) <= ff / 2 < sum(pmf[: lo + 1]) or lo == 0
        assert sum(pmf[hi + 1:]) <= ff / 2 < sum(pmf[hi:])
    assert lo < n * p < hi
    assert binomial_bounds(10, 0.0) == (0, 0) and binomial_bounds(10, 1.0) == (10, 10)


def test_the_stated_false_failure_rates_hold():
    # At a level of 5% a correct sampler must fail about 5% of the time, never much more: the
    # bound each message states is the rate at which it fails a correct solution.
    g = torch.Generator().manual_seed(0)
    trials, level = 2000, 0.05
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    fails = {"rate": 0, "counts": 0, "mean": 0}
    for _ in range(trials):
        draws = torch.multinomial(probs, 400, replacement=True, generator=g)
        for kind, run in (
            ("rate", lambda d=draws: assert_rate(int((d == 3).sum()), 400, 0.4, name="r", false_failure=level)),
            ("counts", lambda d=draws: assert_counts(torch.bincount(d, minlength=4).tolist(), probs.tolist(),
                                                     name="c", false_failure=level)),
            ("mean", lambda d=draws: assert_mean(d.double(), 2.0, 1.0, name="m", false_failure=level)),
        ):
            try:
                run()
            except CheckFailure:
                fails[kind] += 1
    for kind, n in fails.items():
        assert n / trials < 0.075, (kind, n)  # a test that never fails would pass this too, so:
    assert fails["counts"] > 0.025 * trials and fails["mean"] > 0.025 * trials


def test_statistical_failures_state_their_false_failure_rate():
    with pytest.raises(CheckFailure, match=r"a correct solution lands outside with probability below 1e-06"):
        assert_rate(700, 1000, 0.5, name="heads")
    with pytest.raises(CheckFailure, match=r"chi-square .* furthest off: b, 600 draws where 250 were expected"):
        assert_counts([250, 600, 150], [0.25, 0.25, 0.5], name="die", labels=["a", "b", "c"])
    with pytest.raises(CheckFailure, match="which has probability 0"):
        assert_counts([5, 1], [1.0, 0.0], name="die")
    with pytest.raises(ValueError, match="below 5"):
        assert_counts([1, 2], [0.5, 0.5], name="die")
    with pytest.raises(CheckFailure, match=r"mean 0.5 over 10000 samples; expected 0 \+- "):
        assert_mean(torch.full((10000,), 0.5), 0.0, 1.0, name="noise")


def test_tiny_lm_is_hashable_built_once_and_rebuilt_alike_in_the_solutions_process():
    from grader import probes
    from grader.checks import TinyLM

    spec = TinyLM.of("gpt2", seed=3, vocab_size=31, n_embd=8, n_layer=1, n_head=2, n_positions=16,
                     attn_implementation="eager")
    assert spec == TinyLM.of("gpt2", 3, attn_implementation="eager", n_head=2, n_embd=8, n_layer=1,
                             n_positions=16, vocab_size=31) and len({spec, spec}) == 1
    assert str(spec) == "GPT2LMHeadModel" and spec.build() is spec.build()
    other = TinyLM.of("gpt2", seed=4, **spec.kwargs)
    assert not torch.equal(other.build().lm_head.weight, spec.build().lm_head.weight)
    ids = torch.tensor([[1, 2, 3]])
    program = spec.program() + [["method", 4, "__call__", [["val", ids]]], ["getattr", 7, "logits"]]
    (logits,) = probes.run_program(SimpleNamespace(), program, [8])
    with torch.no_grad():
        assert torch.equal(logits, spec.build()(ids).logits)
