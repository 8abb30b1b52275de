"""Speculative decoding: the acceptance rule that keeps the target model's distribution.

A small DRAFT model proposes gamma tokens x_1 .. x_gamma, each drawn from its own next-token
distribution q_i; the large TARGET model then scores all of them in ONE forward pass, giving
its distributions p_1 .. p_{gamma+1} at those positions (p_i is the target's distribution
for position i given the prompt and x_1 .. x_{i-1}; p_{gamma+1} follows all gamma drafts).
Speculative sampling (Leviathan et al. 2023, "Fast Inference from Transformers via
Speculative Decoding"; Chen et al. 2023) decides which drafts to keep so that the tokens it
emits are distributed EXACTLY as if they had been sampled from the target model one by one:

    for i = 1 .. gamma:
        accept x_i with probability min(1, p_i(x_i) / q_i(x_i));
        if rejected: emit one token drawn from norm(max(0, p_i - q_i)) and stop
    if all gamma were accepted: emit one more token drawn from p_{gamma+1} (the "bonus")

where norm(f) = f / sum(f). So every step emits between 1 and gamma + 1 tokens. A draft token
is accepted with probability alpha_i = sum_x min(p_i(x), q_i(x)) (averaged over what the
draft proposes), which is what makes speculative decoding fast when the draft agrees with
the target.

Conventions for all three functions:
- Probabilities, not logits. `target_probs`: float tensor (B, gamma + 1, V); `draft_probs`:
  float tensor (B, gamma, V), float32 or float64, every row >= 0 and summing to 1 (up to
  rounding); B >= 1 independent sequences, gamma >= 1, V >= 2. Row b, position i of the
  tensors is p_{i+1} / q_{i+1} of sequence b (0-based positions in code).
- Inputs are never modified.
"""

from __future__ import annotations

import torch


def acceptance_rate(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    """alpha = sum over x of min(p(x), q(x)), over the last axis: the probability that a draft
    token drawn from q is accepted.

    `target_probs` and `draft_probs` have the same shape (..., V); returns a tensor of the
    leading shape (...), in their dtype: float64 inputs are computed in float64. (It is also 1 - TV(p, q), with the total variation
    distance TV = 1/2 sum |p - q|.)
    """
    raise NotImplementedError


def expected_tokens_per_step(target_probs: torch.Tensor, draft_probs: torch.Tensor) -> torch.Tensor:
    """The expected number of tokens one speculative step emits, per sequence: (B,).

    With alpha_i = acceptance_rate(target_probs[:, i], draft_probs[:, i]) for i = 0 .. gamma-1
    (target_probs[:, gamma] is the bonus distribution and plays no part), the first k drafts
    are all accepted with probability alpha_0 * ... * alpha_{k-1}, and one more token (the
    resampled or the bonus one) always follows, so

        E = 1 + sum over k = 1 .. gamma of (alpha_0 * alpha_1 * ... * alpha_{k-1})

    which is (1 - alpha**(gamma+1)) / (1 - alpha) when every alpha_i equals alpha. This
    treats the alpha_i as fixed (the distributions given), as the checks' models do.
    """
    raise NotImplementedError


def speculative_step(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    draft_tokens: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of speculative sampling for each of the B sequences; returns (tokens, n).

    - `draft_tokens`: int64 tensor (B, gamma), the draft's proposals (draft_tokens[b, i] was
      drawn from draft_probs[b, i], so its draft probability is > 0).
    - `generator`: a torch.Generator; EVERY random number comes from it (e.g.
      torch.rand(..., generator=generator), torch.multinomial(..., generator=generator)), so
      the same seed gives the same result and torch's global random state is neither used
      nor reseeded. The order and number of your draws are up to you: the checks test the
      distribution of what you emit over many sequences, not particular values.

    For each sequence b independently, go through i = 0 .. gamma-1 with x = draft_tokens[b, i],
    p = target_probs[b, i], q = draft_probs[b, i]: accept x with probability
    min(1, p(x) / q(x)) (e.g. draw u uniform in [0, 1) and accept iff u < p(x) / q(x)); at the
    first rejection draw the next token from max(0, p - q) / sum(max(0, p - q)) and stop. If
    all gamma drafts are accepted, draw the bonus token from target_probs[b, gamma]. (If
    max(0, p - q) is zero everywhere at a rejection, which only rounding can cause when
    p ~ q, draw from p instead.)

    Returns
    - `tokens`: int64 tensor (B, gamma + 1): row b holds the n_b accepted drafts
      (= draft_tokens[b, :n_b]), then the one drawn token at position n_b, then -1 in the
      remaining gamma - n_b positions. So row b emits n_b + 1 tokens, the first n_b + 1
      entries, and there is always at least one.
    - `n`: int64 tensor (B,), n_b in 0 .. gamma: the number of accepted draft tokens.
    """
    raise NotImplementedError
