"""A reward model: the Bradley-Terry loss, and pooling per-token scores at the last real token.

A reward model is a language model whose LM head is replaced by a scalar head: it gives one
score per token, scores (B, T) (or (B, T, K) with K outputs), and the sequence's reward is the
score at its LAST REAL token, the one that has read the whole prompt and response. It is
trained on pairs (chosen, rejected) of responses to the same prompt, where people preferred
`chosen`, with the Bradley-Terry model P(chosen > rejected) = sigmoid(r_chosen - r_rejected).

Conventions (all of them are checked):

bradley_terry_loss
- loss = mean over pairs i of -log sigmoid(r_chosen[i] - r_rejected[i] - margin[i]), exactly
  TRL's RewardTrainer: `-nn.functional.logsigmoid(rewards_chosen - rewards_rejected -
  margin).mean()`. The margin is SUBTRACTED: a pair must beat it to get a small loss.
  `margin` is None (no margin), a Python float (the same for every pair) or a tensor (B,).
- The mean over pairs, not the sum. Computed in float32 (upcast the rewards first, whatever
  their dtype); returns a 0-d float32 tensor, differentiable with respect to the rewards.
- Stable for any reward difference: -log sigmoid(d) = softplus(-d) is about -d for d very
  negative (a difference of -200 gives 200, not inf) and about 0 for d very positive.
  Use F.logsigmoid, not log(sigmoid(d)), which is log(0) = -inf below d of about -104.

pool_last_token
- scores: (B, T) or (B, T, K), any float dtype; the result is scores[b, last_b] for every
  row b: shape (B,) or (B, K), in the scores' dtype, differentiable with respect to scores
  (plain indexing).
- last_b is the largest position t whose token is real:
  * with `attention_mask` (B, T) given (bool, or integers/floats of 0 and 1: nonzero = real),
    real means attention_mask[b, t] != 0. This is the rule: it works for LEFT padding
    (last_b = T - 1) and RIGHT padding alike, and it is right when the pad token is also
    the EOS token (the sequence's own final EOS is real and is where its reward is read).
    `input_ids` and `pad_token_id` are then ignored even if given.
  * with no attention_mask but `input_ids` (B, T) and `pad_token_id` given, real means
    input_ids[b, t] != pad_token_id: transformers' rule in *ForSequenceClassification (the
    rightmost token that is not the pad token). It agrees with the mask when pad != eos;
    when pad == eos it pools the token BEFORE each sequence's final EOS.
  * with neither, last_b = T - 1 for every row.
  Every row has at least one real token.
- Inputs are never modified in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over pairs of -logsigmoid(chosen - rejected - margin): a 0-d float32 tensor.

    `chosen_rewards` and `rejected_rewards` are (B,) rewards of the two responses of each pair.
    """
    raise NotImplementedError


def pool_last_token(
    scores: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Each row's score at its last real token: (B,) for scores (B, T), (B, K) for (B, T, K).

    The last real token is found from `attention_mask` when it is given, else from
    `input_ids != pad_token_id`, else it is position T - 1 (see the module docstring).
    """
    raise NotImplementedError
