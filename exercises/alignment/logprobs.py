"""Log-probabilities of given tokens, and entropies, from a causal LM's logits.

Every RLHF method needs log pi(y | x) of a response y that is already written (DPO's
policy and reference log-probs, PPO's and GRPO's ratios, KL penalties), and often the
policy's entropy. All of it comes from one forward pass: logits (B, T, V) over the
concatenated prompt + response ids (B, T).

The shift: the logits at position t predict the token at t + 1. So

    token_logprobs[b, t] = log softmax(logits[b, t])[input_ids[b, t + 1]]     t = 0 .. T-2

logits[:, :-1] are scored against input_ids[:, 1:]; the logits at the last position predict
nothing that is given, and input_ids[:, 0] is never predicted.

The response mask: `response_mask` (B, T) is aligned with `input_ids` (not with the shifted
logits): response_mask[b, t] is nonzero (True, 1 or 1.0; bool, integer or float dtype) when
input_ids[b, t] is a response token whose log-prob counts, 0 for prompt and padding tokens.
After the shift, position t of the (B, T-1) per-token values counts when
response_mask[b, t + 1] is nonzero; response_mask[:, 0] is never used.

Conventions:
- Dtypes: computed in float32 whatever the logits' dtype (upcast with `logits.float()`
  first: bfloat16, float16 and float64 logits alike, so float64 logits are computed in
  float32 too), and every result is float32.
- Numerics: use log_softmax (it subtracts the max first). Logits may be huge (thousands,
  with gaps of thousands between tokens): log(softmax(x)) then underflows to log(0) = -inf,
  and exp without the max shift overflows. Every result here is finite for finite logits.
- Sum vs mean: `sequence_logprobs` sums over the response tokens by default (DPO's
  convention); `average=True` divides that sum by the number of response tokens of the
  same row (not by T - 1, not by the batch's count).
- A row with no response token (all of response_mask[b, 1:] zero, or T == 1): the sum is 0,
  and its mean is 0 too (the count is clamped to at least 1: 0 / 1 = 0, as TRL's GRPO does),
  never NaN, so that one empty row cannot poison a batch's loss or gradient.
- Entropy in nats: H = -sum_v p_v log p_v with p = softmax(logits), from log_softmax
  (p_v log p_v is 0 where p_v underflows to 0).
- Differentiable with respect to `logits` (no detach, no .item()); positions outside the
  response get zero gradient. Inputs are never modified in place.

These are the formulas TRL documents: `selective_log_softmax(logits, index)` equals
`torch.gather(logits.log_softmax(-1), dim=-1, index=index.unsqueeze(-1)).squeeze(-1)`,
and `entropy_from_logits` is -(exp(logp) * logp).sum(-1) with logp = log_softmax(logits).
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probs of the given next tokens: float32 (B, T-1).

    out[b, t] = log_softmax(logits[b, t].float())[input_ids[b, t + 1]]. `logits` (B, T, V),
    `input_ids` int64 (B, T), T >= 1 (T == 1 gives shape (B, 0)).
    """
    raise NotImplementedError


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """log pi(response | prompt) per sequence: float32 (B,).

    The sum of token_logprobs[b, t] over the t with response_mask[b, t + 1] nonzero; with
    `average=True` that sum divided by the row's number of such t (0 for a row with none).
    """
    raise NotImplementedError


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The entropy (nats) of the distribution at every position: float32 (B, T).

    out[b, t] = -sum_v p[v] log p[v] with p = softmax(logits[b, t].float()). No shift and no
    mask: the entropy of each given position's own distribution.
    """
    raise NotImplementedError


def masked_entropy(logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """The mean entropy over the positions that predict a response token: float32 (B,).

    The mean of token_entropy(logits)[b, t] over the t in 0 .. T-2 with response_mask[b, t + 1]
    nonzero (the same positions as sequence_logprobs scores), 0 for a row with none.
    """
    raise NotImplementedError
