"""DPO and IPO losses from summed response log-probs, and a few DPO steps on a tiny GPT-2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

# The exercise's API; _model and _pair_logprobs are this solution's own helpers.
__all__ = ["sequence_logprobs", "dpo_loss", "ipo_loss", "train_dpo"]


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    # logits[:, t] predicts input_ids[:, t + 1]; the first token is never predicted
    token_logps = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = response_mask[:, 1:].to(token_logps.dtype)
    return (token_logps * mask).sum(-1)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    logits = chosen_logratios - rejected_logratios
    losses = -F.logsigmoid(beta * logits)
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses.mean(), chosen_rewards, rejected_rewards


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # IPO compares per-token averages (TRL divides by the response length for loss_type="ipo")
    chosen_lengths = chosen_lengths.to(policy_chosen_logps.dtype)
    rejected_lengths = rejected_lengths.to(policy_rejected_logps.dtype)
    chosen_logratios = (policy_chosen_logps - reference_chosen_logps) / chosen_lengths
    rejected_logratios = (policy_rejected_logps - reference_rejected_logps) / rejected_lengths
    logits = chosen_logratios - rejected_logratios
    losses = (logits - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses.mean(), chosen_rewards, rejected_rewards


def _model(config: dict[str, Any], state: dict[str, torch.Tensor]) -> GPT2LMHeadModel:
    model = GPT2LMHeadModel(GPT2Config(**config))
    model.load_state_dict(state)
    return model


def _pair_logprobs(model: torch.nn.Module, pairs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of every chosen and every rejected sequence, (N,) each."""
    chosen = sequence_logprobs(model(input_ids=pairs["chosen_ids"]).logits, pairs["chosen_ids"],
                               pairs["chosen_mask"])
    rejected = sequence_logprobs(model(input_ids=pairs["rejected_ids"]).logits, pairs["rejected_ids"],
                                 pairs["rejected_mask"])
    return chosen, rejected


def train_dpo(
    config: dict[str, Any],
    policy_state: dict[str, torch.Tensor],
    reference_state: dict[str, torch.Tensor],
    pairs: dict[str, torch.Tensor],
    *,
    beta: float,
    lr: float,
    steps: int,
) -> dict[str, torch.Tensor]:
    policy = _model(config, policy_state)
    reference = _model(config, reference_state)
    policy.train()
    reference.eval()  # frozen: its log-probs are computed without gradients and it is never stepped
    optimizer = torch.optim.SGD(policy.parameters(), lr=lr)
    for _ in range(steps):
        policy_chosen, policy_rejected = _pair_logprobs(policy, pairs)
        with torch.no_grad():
            reference_chosen, reference_rejected = _pair_logprobs(reference, pairs)
        loss, _, _ = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}
