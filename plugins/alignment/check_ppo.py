"""Checks for alignment.ppo: scalar reference loops, GAE's two identities, the KL estimators' means.

No library exposes these as functions (TRL's PPOTrainer and OpenRLHF inline them in their
training loops), so, as the curriculum says, the ground truth is written out here as scalar
Python loops in float64, one token at a time, straight from the formulas in the stub:

- GAE walks each row's valid steps backward: delta_t = r_t + gamma V_{t+1} - V_t with
  V = 0 after the row's last valid step, A_t = delta_t + gamma lam A_{t+1}, returns = A + V.
- Two closed forms that do not run the recursion at all. With lam = 0 the trace is gone and
  A_t = delta_t, the one-step TD error. With lam = 1, A_t = sum_k gamma^k delta_{t+k}, and the
  values telescope: sum_k gamma^k (gamma V_{t+k+1} - V_{t+k}) = -V_t + gamma^n V_end = -V_t
  (V_end = 0 after the last valid step), so A_t + V_t = sum_k gamma^k r_{t+k}, the discounted
  Monte-Carlo return.
- The clipped surrogate and clipped value losses token by token, then the batch-level token
  mean; gradients against torch autograd on the same formulas.
- The KL estimators: the formulas token by token, and what they estimate. For x ~ p (the
  policy) and the reference q, E_p[log p(x) - log q(x)] = KL(p || q) is the definition (k1),
  and with r = q(x) / p(x), E_p[r] = sum_x q(x) = 1, so E_p[(r - 1) - log r] = KL(p || q) too
  (k3). Over two small categoricals the exact KL is a finite sum; the mean of the student's
  estimates over n draws from p must land within Hoeffding's bound: for i.i.d. values in
  [a, b], P(|mean - E| >= t) <= 2 exp(-2 n t^2 / (b - a)^2), so t = (b - a) sqrt(ln(2 / delta)
  / (2 n)) fails a correct estimator with probability at most delta = 1e-6 (a bound, not an
  approximation). The draws come from the check's seeded generator, so the verdict is
  deterministic; a hidden check's salt risks at most delta.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from grader.compare import check, fail, raises

# float32: the recursion and the sums round at every step; the error is a few ulps of the
# largest partial sum (measured below 1e-6 here), so 1e-5 leaves a margin of ten.
TOL = {"atol": 1e-5, "rtol": 1e-5}
TOL64 = {"atol": 1e-10, "rtol": 1e-10}
FALSE_FAILURE = 1e-6  # the chance that the statistical check fails a correct estimator (Hoeffding, exact bound)


def row_mask(lengths: list[int], steps: int, starts: list[int] | None = None) -> torch.Tensor:
    """mask[b, s : s + n] = True for each row's start s (0 by default: right padding) and length n."""
    mask = torch.zeros(len(lengths), steps, dtype=torch.bool)
    for b, n in enumerate(lengths):
        s = 0 if starts is None else starts[b]
        mask[b, s : s + n] = True
    return mask


def garbage(x: torch.Tensor, mask: torch.Tensor, rng: Any, scale: float = 30.0) -> torch.Tensor:
    """`x` with large random values at the masked positions (what a model outputs there is not data)."""
    return torch.where(mask, x, rng.randn(*x.shape, dtype=x.dtype, scale=scale))


def describe_mask(mask: torch.Tensor) -> str:
    rows = []
    for m in mask.tolist():
        idx = [t for t, v in enumerate(m) if v]
        rows.append(f"{idx[0]}..{idx[-1]}" if idx else "none")
    return "valid tokens per row: " + ", ".join(rows)


# --- the truths, token by token in float64 --------------------------------------------------


def gae_loop(rewards, values, mask, gamma, lam):
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=torch.float64)
    ret = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        steps = [t for t in range(T) if mask[b, t]]
        last = 0.0
        for k in reversed(range(len(steps))):
            t = steps[k]
            next_value = float(values[b, steps[k + 1]]) if k + 1 < len(steps) else 0.0
            delta = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            last = delta + gamma * lam * last
            adv[b, t] = last
            ret[b, t] = last + float(values[b, t])
    return adv.to(rewards.dtype), ret.to(rewards.dtype)


def td_errors(rewards, values, mask, gamma):
    """lam = 0: r_t + gamma V_{t+1} - V_t, with V_{t+1} = 0 after the last valid step (closed form)."""
    r, v, m = rewards.double(), values.double(), mask.double()
    next_v = torch.zeros_like(v)
    next_v[:, :-1] = v[:, 1:] * m[:, 1:]
    adv = (r + gamma * next_v - v) * m
    return adv.to(rewards.dtype), ((adv + v) * m).to(rewards.dtype)


def discounted_returns(rewards, mask, gamma):
    """lam = 1: sum_k gamma^k r_{t+k} over the rest of the row's valid steps (a triangular sum)."""
    T = rewards.shape[1]
    t = torch.arange(T, dtype=torch.float64)
    power = t[None, :] - t[:, None]  # power[t, s] = s - t
    weights = torch.where(power >= 0, torch.tensor(gamma, dtype=torch.float64) ** power.clamp_min(0), 0.0)
    r = rewards.double() * mask.double()
    return (r @ weights.T * mask.double()).to(rewards.dtype)


def masked_token_mean(per_token, mask):
    total, count = 0.0, 0
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if mask[b, t]:
                total += per_token(b, t)
                count += 1
    return total / count if count else math.nan


def policy_loop(logp, old_logp, adv, mask, clip_eps):
    def token(b, t):
        ratio = math.exp(float(logp[b, t]) - float(old_logp[b, t]))
        a = float(adv[b, t])
        return -min(ratio * a, min(max(ratio, 1 - clip_eps), 1 + clip_eps) * a)

    return torch.tensor(masked_token_mean(token, mask), dtype=logp.dtype)


def value_loop(values, old_values, returns, mask, clip_eps):
    def token(b, t):
        v, old, g = float(values[b, t]), float(old_values[b, t]), float(returns[b, t])
        clipped = old + min(max(v - old, -clip_eps), clip_eps)
        return max((v - g) ** 2, (clipped - g) ** 2)

    return torch.tensor(0.5 * masked_token_mean(token, mask), dtype=values.dtype)


def kl_formula(logp, ref_logp, kind):
    out = []
    for lp, lq in zip(logp.double().reshape(-1).tolist(), ref_logp.double().reshape(-1).tolist()):
        if kind == "k1":
            out.append(lp - lq)
        elif kind == "k2":
            out.append(0.5 * (lp - lq) ** 2)
        else:
            log_r = lq - lp
            out.append(math.expm1(log_r) - log_r)
    return torch.tensor(out, dtype=torch.float64).reshape(logp.shape).to(logp.dtype)


# autograd truths: the same formulas as torch ops; the constants are detached, so only the
# gradient with respect to logp (or values) is compared
def policy_autograd(logp, old_logp, adv, mask, clip_eps):
    ratio = torch.exp(logp - old_logp.detach())
    a = adv.detach()
    per_token = -torch.min(ratio * a, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * a)
    return torch.where(mask, per_token, 0.0).sum() / mask.sum()


def value_autograd(values, old_values, returns, mask, clip_eps):
    old, g = old_values.detach(), returns.detach()
    clipped = old + torch.clamp(values - old, -clip_eps, clip_eps)
    per_token = torch.max((values - g) ** 2, (clipped - g) ** 2)
    return 0.5 * torch.where(mask, per_token, 0.0).sum() / mask.sum()


def episode(rng: Any, lengths: list[int], steps: int, starts: list[int] | None = None, dtype=torch.float32):
    """Rewards (mostly small per-token rewards, a larger score on each row's last token, as in RLHF),
    values, and the mask; garbage at padding."""
    mask = row_mask(lengths, steps, starts)
    rewards = rng.randn(len(lengths), steps, dtype=dtype, scale=0.1)
    last = mask & ~torch.cat([mask[:, 1:], torch.zeros(len(lengths), 1, dtype=torch.bool)], dim=1)
    rewards = torch.where(last, rng.randn(len(lengths), steps, dtype=dtype, scale=2.0), rewards)
    values = rng.randn(len(lengths), steps, dtype=dtype)
    return garbage(rewards, mask, rng), garbage(values, mask, rng), mask


# --- GAE ------------------------------------------------------------------------------------


@pytest.mark.points(3)
def test_gae_matches_reference_loop(expect, rng):
    # right padding, left padding (starts > 0) and a full row; large garbage at every padding position
    rewards, values, mask = episode(rng, [11, 7, 1, 4, 9], 11, starts=[0, 0, 0, 5, 1])
    what = f"gae(rewards, values (5, 11) float32, mask; {describe_mask(mask)}; padding holds large garbage"
    expect(lambda s: s.gae(rewards, values, mask), truth=gae_loop(rewards, values, mask, 1.0, 0.95), **TOL,
           name=f"{what}, default gamma=1.0, lam=0.95) vs the backward loop (item [0] advantages, [1] returns)")
    for gamma, lam in ((0.9, 0.8), (0.5, 0.95)):
        expect(lambda s, g=gamma, lm=lam: s.gae(rewards, values, mask, gamma=g, lam=lm),
               truth=gae_loop(rewards, values, mask, gamma, lam), **TOL,
               name=f"{what}, gamma={gamma}, lam={lam}) vs the backward loop (item [0] advantages, [1] returns)")


@pytest.mark.points(2)
def test_gae_lambda_zero_is_td_error(expect, rng):
    rewards, values, mask = episode(rng, [9, 6, 2], 9, starts=[0, 2, 0])
    for gamma in (0.9, 1.0):
        expect(lambda s, g=gamma: s.gae(rewards, values, mask, gamma=g, lam=0.0),
               truth=td_errors(rewards, values, mask, gamma), **TOL,
               name=f"gae(rewards, values (3, 9), mask; {describe_mask(mask)}; gamma={gamma}, lam=0) vs the one-step "
                    "TD error r_t + gamma V_{t+1} - V_t (V = 0 after the last valid token) and returns r_t + gamma "
                    "V_{t+1}")


@pytest.mark.points(2)
def test_gae_lambda_one_is_monte_carlo_return(expect, rng):
    rewards, values, mask = episode(rng, [10, 7, 3, 1], 10, starts=[0, 0, 4, 9])
    for gamma in (0.8, 1.0):
        expect(lambda s, g=gamma: s.gae(rewards, values, mask, gamma=g, lam=1.0)[1],
               truth=discounted_returns(rewards, mask, gamma), **TOL,
               name=f"gae(rewards, values (4, 10), mask; {describe_mask(mask)}; gamma={gamma}, lam=1) returns vs "
                    "the discounted Monte-Carlo return sum_k gamma^k r_{t+k} to the end of the row (0 at padding)")


def test_gae_edge_cases(expect, rng):
    # T = 1; a row with no valid token; a row whose only token sits between padding on both sides
    for lengths, steps, starts, what in (([1, 1, 0], 1, None, "T = 1, one row fully padded"),
                                         ([1, 0, 3, 8], 8, [3, 0, 5, 0], "a lone token at 3, an empty row, the last "
                                                                         "three tokens, a full row")):
        rewards, values, mask = episode(rng, lengths, steps, starts)
        expect(lambda s, r=rewards, v=values, m=mask: s.gae(r, v, m, gamma=0.9, lam=0.7),
               truth=gae_loop(rewards, values, mask, 0.9, 0.7), **TOL,
               name=f"gae(rewards, values {tuple(rewards.shape)}, mask; {what}; gamma=0.9, lam=0.7) vs the backward "
                    "loop (0 at every masked position)")


# --- the clipped surrogate ------------------------------------------------------------------


def policy_batch(rng: Any, lengths: list[int], steps: int, dtype=torch.float32, spread: float = 0.4):
    """Log-probs with old/new ratios from about 0.3 to 3 (many outside [0.8, 1.2], both sides) and
    advantages of both signs; garbage at padding (moderate: exp stays finite)."""
    mask = row_mask(lengths, steps)
    logp = rng.randn(len(lengths), steps, dtype=dtype, scale=0.5) - 2.0
    old_logp = logp + rng.randn(len(lengths), steps, dtype=dtype, scale=spread)
    adv = rng.randn(len(lengths), steps, dtype=dtype)
    return (garbage(logp, mask, rng, 3.0), garbage(old_logp, mask, rng, 3.0), garbage(adv, mask, rng), mask)


@pytest.mark.points(3)
def test_policy_loss_matches_reference_loop(expect, rng):
    # rows of 12, 3, 7 and 1 valid tokens: a mean of per-row means or a mean over padding both differ
    logp, old_logp, adv, mask = policy_batch(rng, [12, 3, 7, 1], 12)
    what = "policy_loss(logp, old_logp, advantages (4, 12) float32, mask with 12, 3, 7 and 1 valid tokens"
    expect(lambda s: s.policy_loss(logp, old_logp, adv, mask), truth=policy_loop(logp, old_logp, adv, mask, 0.2),
           **TOL, name=f"{what}, default clip_eps=0.2) vs the token-by-token loop")
    expect(lambda s: s.policy_loss(logp, old_logp, adv, mask, clip_eps=0.1),
           truth=policy_loop(logp, old_logp, adv, mask, 0.1), **TOL,
           name=f"{what}, clip_eps=0.1) vs the token-by-token loop")
    # gradients in float64, with respect to logp only (the rest are constants)
    args = [t.double() if t.is_floating_point() else t for t in (logp, old_logp, adv, mask)]
    expect.gradients(lambda s: s.policy_loss, [*args, 0.2], truth=policy_autograd, atol=1e-12, rtol=1e-9,
                     name="policy_loss(logp, old_logp, advantages (4, 12) float64, mask, 0.2) under autograd (input 0 "
                          "is logp; its gradient is 0 where the clipped term is the minimum)")


def test_policy_loss_edge_cases(expect, rng):
    # the first PPO epoch: old_logp == logp, ratio 1, so the loss is minus the mean advantage
    logp, _, adv, mask = policy_batch(rng, [5, 2, 0], 5)
    expect(lambda s: s.policy_loss(logp, logp.clone(), adv, mask),
           truth=(-adv.double()[mask].mean()).to(torch.float32), **TOL,
           name="policy_loss(logp, old_logp = logp, advantages (3, 5), mask with 5, 2 and 0 valid tokens) vs minus the "
                "mean advantage over the valid tokens (ratio 1)")
    # one token per row, T = 1, and ratios far outside the clip range (exp(+-3))
    logp = rng.randn(4, 1) - 1.0
    old_logp = logp + torch.tensor([[3.0], [-3.0], [3.0], [-3.0]])
    adv = torch.tensor([[1.5], [1.5], [-0.5], [-0.5]])
    mask = torch.ones(4, 1, dtype=torch.bool)
    expect(lambda s: s.policy_loss(logp, old_logp, adv, mask), truth=policy_loop(logp, old_logp, adv, mask, 0.2),
           **TOL, name="policy_loss(T = 1, ratios exp(-3) and exp(3) with advantages +1.5 and -0.5)")
    # no valid token at all: 0 / 0
    none = torch.zeros(2, 3, dtype=torch.bool)
    expect(lambda s: s.policy_loss(rng.randn(2, 3), rng.randn(2, 3), rng.randn(2, 3), none),
           truth=torch.tensor(math.nan), **TOL, name="policy_loss(mask all False) vs NaN (0 / 0)")


# --- the clipped value loss -----------------------------------------------------------------


@pytest.mark.points(2)
def test_value_loss_matches_reference_loop(expect, rng):
    mask = row_mask([8, 5, 2], 8)
    old_values = rng.randn(3, 8)
    # new values moved by up to +-0.6 from the old ones: beyond the clip range on both sides
    values = old_values + rng.randn(3, 8, scale=0.35)
    returns = old_values + rng.randn(3, 8, scale=0.8)
    values, old_values, returns = (garbage(x, mask, rng) for x in (values, old_values, returns))
    what = "value_loss(values, old_values, returns (3, 8) float32, mask with 8, 5 and 2 valid tokens"
    for eps in (0.2, 0.05):
        expect(lambda s, e=eps: s.value_loss(values, old_values, returns, mask, clip_eps=e),
               truth=value_loop(values, old_values, returns, mask, eps), **TOL,
               name=f"{what}, clip_eps={eps}) vs 0.5 * the token mean of max(unclipped, clipped squared error)")
    expect(lambda s: s.value_loss(values, old_values, returns, mask),
           truth=value_loop(values, old_values, returns, mask, 0.2), **TOL, name=f"{what}, default clip_eps=0.2)")
    args = [t.double() if t.is_floating_point() else t for t in (values, old_values, returns, mask)]
    expect.gradients(lambda s: s.value_loss, [*args, 0.2], truth=value_autograd, atol=1e-12, rtol=1e-9,
                     name="value_loss(values, old_values, returns (3, 8) float64, mask, 0.2) under autograd (input 0 "
                          "is values)")


# --- the KL estimators ----------------------------------------------------------------------


def kl_inputs(rng: Any, shape: tuple[int, ...], dtype=torch.float32):
    """Log-probs and reference log-probs whose differences run from 1e-7 (r near 1) to about 8."""
    logp = rng.randn(*shape, dtype=dtype, scale=2.0) - 3.0
    size = 10.0 ** (rng.rand(*shape, dtype=torch.float64) * 7.9 - 7.0)  # 1e-7 .. 8
    sign = torch.where(rng.rand(*shape) < 0.5, -1.0, 1.0).double()
    ref_logp = (logp.double() + sign * size).to(dtype)
    return logp, ref_logp


@pytest.mark.points(2)
def test_kl_estimators(expect, rng):
    for dtype, tol in ((torch.float32, {"atol": 1e-6, "rtol": 1e-5}), (torch.float64, TOL64)):
        logp, ref_logp = kl_inputs(rng.child(str(dtype)), (6, 9), dtype)
        for kind in ("k1", "k2", "k3"):
            expect(lambda s, a=logp, b=ref_logp, k=kind: s.kl_estimate(a, b, kind=k),
                   truth=kl_formula(logp, ref_logp, kind), **tol,
                   name=f"kl_estimate(logp, ref_logp (6, 9) {str(dtype).replace('torch.', '')}, kind={kind!r}) vs "
                        "the formula token by token (|logp - ref_logp| from 1e-7 to 8)")
    expect(lambda s: s.kl_estimate(logp, ref_logp), truth=kl_formula(logp, ref_logp, "k1"), **TOL64,
           name="kl_estimate(logp, ref_logp) with the default kind ('k1')")
    check(raises(lambda: expect.solution.kl_estimate(logp, ref_logp, kind="k4")),
          "kl_estimate(logp, ref_logp, kind='k4') must raise ValueError (the kinds are 'k1', 'k2' and 'k3')")


def test_k3_is_never_negative(expect, rng):
    # (r - 1) - log r >= 0 for every r > 0 (log r <= r - 1): a per-token penalty, never a bonus
    logp, ref_logp = kl_inputs(rng, (40, 50))

    def call(m: Any) -> Any:
        return m.kl_estimate(logp, ref_logp, kind="k3")

    got = call(expect.solution)
    check(isinstance(got, torch.Tensor) and got.shape == logp.shape,
          f"kl_estimate(logp, ref_logp (40, 50), kind='k3') must return a tensor of shape (40, 50), got {got!r:.80}")
    # float rounding may give a tiny negative where r is near 1: a few ulps of (1 + r) are allowed
    r = torch.exp(ref_logp.double() - logp.double())
    slack = 8 * torch.finfo(torch.float32).eps * (1 + r)
    bad = got.double() < -slack
    if bad.any():
        i = int(bad.reshape(-1).nonzero()[0])
        fail(f"kl_estimate(logp, ref_logp (40, 50) float32, kind='k3'): {int(bad.sum())} of 2000 values are negative, "
             f"e.g. {float(got.reshape(-1)[i]):.6g} at logp = {float(logp.reshape(-1)[i]):.6g}, ref_logp = "
             f"{float(ref_logp.reshape(-1)[i]):.6g}; k3 = (r - 1) - log r with r = exp(ref_logp - logp) is >= 0 for "
             "every r > 0", got, expect.mistakes(call))


# two categoricals over 5 tokens, far enough apart that the estimators' expectations differ
POLICY = (0.5, 0.2, 0.15, 0.1, 0.05)
REFERENCE = (0.1, 0.2, 0.2, 0.25, 0.25)
DRAWS = 200_000


@pytest.mark.points(2)
def test_k1_and_k3_are_unbiased(expect, rng):
    p = torch.tensor(POLICY, dtype=torch.float64)
    q = torch.tensor(REFERENCE, dtype=torch.float64)
    exact = float((p * (p / q).log()).sum())  # KL(pi || pi_ref)
    x = torch.multinomial(p, DRAWS, replacement=True, generator=rng.torch)
    logp, ref_logp = p.log()[x], q.log()[x]
    log_ratio = (p / q).log()  # per token: k1's values; k3's are (r - 1) - log r with log r = -log_ratio
    ranges = {"k1": log_ratio, "k3": torch.expm1(-log_ratio) + log_ratio}
    bound_factor = math.sqrt(math.log(2 / FALSE_FAILURE) / (2 * DRAWS))
    for kind, values in ranges.items():
        spread = float(values.max() - values.min())
        bound = spread * bound_factor  # Hoeffding: |mean - KL| >= bound with probability <= FALSE_FAILURE

        def mean(m: Any, k: str = kind) -> Any:
            out = m.kl_estimate(logp, ref_logp, kind=k)
            return float(out.double().mean()) if isinstance(out, torch.Tensor) and out.shape == logp.shape else out

        got = mean(expect.solution)
        check(isinstance(got, float), f"kl_estimate(logp, ref_logp ({DRAWS},) float64, kind={kind!r}) must return a "
                                      f"float64 tensor of shape ({DRAWS},)")
        if not abs(got - exact) <= bound:
            fail(f"the mean of kl_estimate(logp, ref_logp, kind={kind!r}) over {DRAWS} tokens drawn from the policy "
                 f"pi = {list(POLICY)} (reference pi_ref = {list(REFERENCE)}) is {got:.6g}; {kind} is an unbiased "
                 f"estimate of KL(pi || pi_ref) = {exact:.6g} (KL(pi_ref || pi) would be "
                 f"{float((q * (q / p).log()).sum()):.6g}), so the mean must lie within +-{bound:.3g} of it "
                 f"(Hoeffding's bound for values spread over {spread:.3g}: a correct estimator lands outside with "
                 f"probability below {FALSE_FAILURE:g})", got, expect.mistakes(mean))


@pytest.mark.hidden
def test_hidden_fresh_shapes(expect, rng):
    """float64 throughout, odd sizes (B = 3, T = 23), gamma and lam the public checks do not use,
    a row padded on both sides, clip ranges 0.3 and 0.15, and the KL estimators on a 3-d batch."""
    rewards, values, mask = episode(rng, [23, 13, 5], 23, starts=[0, 4, 18], dtype=torch.float64)
    expect(lambda s: s.gae(rewards, values, mask, gamma=0.93, lam=0.81),
           truth=gae_loop(rewards, values, mask, 0.93, 0.81), **TOL64,
           name=f"gae(rewards, values (3, 23) float64, mask; {describe_mask(mask)}; gamma=0.93, lam=0.81)")
    logp, old_logp, adv, mask = policy_batch(rng, [17, 1, 9], 17, dtype=torch.float64, spread=0.6)
    expect(lambda s: s.policy_loss(logp, old_logp, adv, mask, clip_eps=0.3),
           truth=policy_loop(logp, old_logp, adv, mask, 0.3), **TOL64,
           name="policy_loss(logp, old_logp, advantages (3, 17) float64, mask with 17, 1 and 9 valid tokens, "
                "clip_eps=0.3)")
    old_values = rng.randn(3, 17, dtype=torch.float64)
    values = old_values + rng.randn(3, 17, dtype=torch.float64, scale=0.3)
    returns = rng.randn(3, 17, dtype=torch.float64, scale=2.0)
    expect(lambda s: s.value_loss(values, old_values, returns, mask, clip_eps=0.15),
           truth=value_loop(values, old_values, returns, mask, 0.15), **TOL64,
           name="value_loss(values, old_values, returns (3, 17) float64, mask with 17, 1 and 9 valid tokens, "
                "clip_eps=0.15)")
    logp, ref_logp = kl_inputs(rng, (2, 3, 7), torch.float64)
    for kind in ("k1", "k2", "k3"):
        expect(lambda s, k=kind: s.kl_estimate(logp, ref_logp, kind=k), truth=kl_formula(logp, ref_logp, kind),
               **TOL64, name=f"kl_estimate(logp, ref_logp (2, 3, 7) float64, kind={kind!r})")
