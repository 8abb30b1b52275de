"""GRPO (DeepSeekMath): group-normalised advantages, the clipped loss with a k3 KL term, verifiable rewards."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    if rewards.dim() != 1 or group_size < 2 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-d with a length that is a multiple of group_size >= 2, got shape "
                         f"{tuple(rewards.shape)} and group_size={group_size}")
    # consecutive entries are one prompt's completions: row g of the view is group g
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)  # unbiased (n - 1), as TRL
    return ((grouped - mean) / (std + eps)).reshape(-1)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.04,
) -> torch.Tensor:
    adv = advantages.unsqueeze(1)  # one advantage per completion, shared by its tokens
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    log_r = ref_logp - logp
    kl = torch.expm1(log_r) - log_r  # k3: an unbiased, non-negative estimate of KL(pi || pi_ref)
    per_token = -(surrogate - beta * kl)
    per_token = torch.where(mask, per_token, torch.zeros_like(per_token))
    # the paper's 1/|o_i| then 1/G: each completion's token mean, then the mean over completions
    per_sequence = per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_sequence.mean()


def extract_answer(completion: str) -> str | None:
    start = completion.rfind("<answer>")
    if start < 0:
        return None
    start += len("<answer>")
    end = completion.find("</answer>", start)
    if end < 0:
        return None
    return completion[start:end].strip()


def answer_reward(completions: list[str], answers: list[str]) -> torch.Tensor:
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
    scores = []
    for completion, answer in zip(completions, answers):
        got = extract_answer(completion)
        scores.append(1.0 if got is not None and got == answer.strip() else 0.0)
    return torch.tensor(scores, dtype=torch.float32)
