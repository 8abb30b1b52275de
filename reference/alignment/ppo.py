"""PPO for RLHF, per token: GAE, the clipped surrogate, the clipped value loss and the KL estimators."""

from __future__ import annotations

import torch


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # one denominator for the whole batch; where() so a padding value never reaches the sum
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum()


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    zero = torch.zeros_like(values)
    # the episode ends at the last valid token: padding has no value and no reward
    values = torch.where(mask, values, zero)
    rewards = torch.where(mask, rewards, zero)
    steps = values.shape[1]
    advantages = torch.zeros_like(values)
    last = zero[:, 0]
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else zero[:, 0]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = torch.where(mask, advantages, zero)
    returns = torch.where(mask, advantages + values, zero)
    return advantages, returns


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    ratio = torch.exp(logp - old_logp)
    surr1 = ratio * advantages
    surr2 = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return _masked_mean(-torch.min(surr1, surr2), mask)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    losses = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * _masked_mean(losses, mask)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    if kind == "k1":
        return logp - ref_logp
    if kind == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if kind == "k3":
        log_r = ref_logp - logp  # r = pi_ref / pi
        # expm1 keeps (r - 1) accurate when r is near 1, where (r - 1) - log r is tiny
        return torch.expm1(log_r) - log_r
    raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")
