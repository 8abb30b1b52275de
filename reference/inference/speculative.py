"""Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): the acceptance rule and its statistics."""

from __future__ import annotations

import torch


def acceptance_rate(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    # P(accept) = sum_x q(x) min(1, p(x)/q(x)) = sum_x min(p(x), q(x))
    return torch.minimum(target_probs, draft_probs).sum(dim=-1)


def expected_tokens_per_step(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    alpha = acceptance_rate(target_probs[:, :-1], draft_probs)  # (B, G)
    # the first k drafts all accepted with probability alpha_1 ... alpha_k; one more token always follows
    return 1 + torch.cumprod(alpha, dim=-1).sum(dim=-1)


def speculative_step(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    draft_tokens: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    batch, gamma, _ = draft_probs.shape
    rows = torch.arange(batch)
    index = draft_tokens.unsqueeze(-1)
    p = target_probs[:, :gamma].gather(-1, index).squeeze(-1)
    q = draft_probs.gather(-1, index).squeeze(-1)
    u = torch.rand(batch, gamma, generator=generator, dtype=target_probs.dtype)
    accepted = u * q < p  # u < p / q: accepted with probability min(1, p(x) / q(x))
    n = accepted.long().cumprod(dim=-1).sum(dim=-1)  # the drafts before the first rejection

    # after n accepted drafts: the residual max(0, p - q) at a rejection, the target itself for the bonus
    residual = (target_probs[:, :gamma] - draft_probs).clamp(min=0)
    last = torch.cat([residual, target_probs[:, gamma:]], dim=1)[rows, n]
    total = last.sum(dim=-1, keepdim=True)
    # a zero residual can only come from rounding (p ~ q): fall back on the target itself
    last = torch.where(total > 0, last, target_probs[rows, n])
    last = last / last.sum(dim=-1, keepdim=True)
    token = torch.multinomial(last, num_samples=1, generator=generator).squeeze(-1)

    tokens = torch.full((batch, gamma + 1), -1, dtype=torch.long)
    tokens[:, :gamma] = torch.where(torch.arange(gamma) < n.unsqueeze(-1), draft_tokens, -1)
    tokens[rows, n] = token
    return tokens, n
