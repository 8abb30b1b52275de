"""Sampling the next token: repetition penalty, temperature, top-k, top-p, and the draw.

A language model gives, for the next position, one logit per token of the vocabulary.
Decoding by sampling turns those logits into a distribution and draws from it. Four knobs
shape the distribution, applied in this order (the order transformers' `generate` uses):

1. repetition penalty: make every token that already occurs in the context less likely;
2. temperature: divide the logits by T (T < 1 sharpens the distribution, T > 1 flattens it);
3. top-k: keep only the k highest-scoring tokens;
4. top-p (nucleus): keep only the smallest set of best tokens whose probability reaches p.

A removed token's logit becomes -inf (so its probability is exactly 0); a kept token keeps
its logit unchanged. Each function must give exactly the kept set that transformers'
logits processors keep on the same logits (`RepetitionPenaltyLogitsProcessor`,
`TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper` in
transformers.generation.logits_process, with filter_value -inf): they are the ground truth
of the checks, and off limits in your code.

Shapes: `logits` is a floating-point tensor (B, V), one row per sequence of the batch,
B >= 1, V >= 1 (any V, not only powers of two; entries may already be -inf). Every
function returns a NEW tensor of the same shape and dtype and never modifies its inputs.
"""

from __future__ import annotations

import torch


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """The CTRL repetition penalty (RepetitionPenaltyLogitsProcessor).

    - `input_ids`: int64 tensor (B, L), L >= 1: the tokens of each row's context so far
      (prompt and generated tokens alike, padding ids included if there are any). Every id
      is in [0, V).
    - `penalty`: a float > 0 (> 1 discourages repetition, < 1 encourages it, 1 changes nothing).

    For each row b and each DISTINCT token id t occurring in input_ids[b] (once, however many
    times it occurs), the logit x = logits[b, t] becomes

        x / penalty   if x >= 0   (zero stays zero)
        x * penalty   if x < 0

    so with penalty > 1 the token always becomes less likely, whatever the sign of its logit.
    Tokens that do not occur in row b's context, and the other rows, are unchanged.
    """
    raise NotImplementedError


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`logits / temperature` (TemperatureLogitsWarper), temperature a float > 0.

    It scales the logits, not the probabilities: softmax(logits / T) is the distribution
    softmax(logits) raised to the power 1/T and renormalised.
    """
    raise NotImplementedError


def top_k_filter(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the top-k tokens of each row (TopKLogitsWarper); the others become -inf.

    - `top_k`: an int >= 1. The number used is k = min(max(top_k, min_tokens_to_keep), V):
      `min_tokens_to_keep` (>= 1) raises it, and a k above the vocabulary keeps everything.
    - Per row, let x_k be the k-th largest logit (counting repeated values: the k-th entry of
      the row sorted in descending order). A token is kept iff its logit >= x_k, so every
      token TIED with x_k is kept as well and a row can keep more than k tokens.
    - Kept logits are returned unchanged (bit for bit); removed ones are -inf.
    """
    raise NotImplementedError


def top_p_filter(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the nucleus of each row (TopPLogitsWarper); the others become -inf.

    - `top_p`: a float in [0, 1]. The probabilities are softmax(logits) of the row, in the
      logits' own dtype.
    - Rank the row's tokens from the most to the least probable. A token is KEPT iff the
      total probability of the tokens ranked strictly above it is < top_p. So the token whose
      probability crosses top_p is kept; and when the tokens above a token hold EXACTLY top_p,
      that token is removed (the kept set is the smallest prefix whose mass is >= top_p).
      Equivalently (how transformers computes it): sort ascending, take the cumulative sum of
      the sorted probabilities, and remove a token when that sum (itself included) is
      <= 1 - top_p.
    - The `min_tokens_to_keep` (>= 1) most probable tokens are always kept, whatever top_p.
    - top_p = 1.0 keeps every token of nonzero probability (a token of probability exactly 0,
      e.g. a -inf logit, has all the mass above it); top_p = 0 keeps min_tokens_to_keep tokens.
    - Among tokens with EQUAL logits, which of them fill the last kept places is up to you
      (the checks compare how many are kept and their values); otherwise the kept set is
      determined. The checks keep every cumulative mass either exactly on top_p (equal
      logits, so the probabilities are exact in binary) or at least 1e-4 away from it, so the
      order of your float sums does not matter.
    - Kept logits are returned unchanged (bit for bit); removed ones are -inf.
    """
    raise NotImplementedError


def process_logits(
    logits: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """The scores `generate(do_sample=True, ...)` samples from: the four steps in this order.

    1. apply_repetition_penalty(input_ids, repetition_penalty), only if repetition_penalty != 1.0
       (input_ids is then required; it is ignored otherwise);
    2. apply_temperature(temperature), only if temperature != 1.0;
    3. top_k_filter(top_k, min_tokens_to_keep), only if top_k is not None and top_k != 0;
    4. top_p_filter(top_p, min_tokens_to_keep), only if top_p is not None and top_p < 1.0.

    Each step works on the previous step's output: the temperature rescales the penalised
    logits, and top-k and top-p select on the tempered ones. Returns the final scores (B, V)
    in the dtype of `logits`.
    """
    raise NotImplementedError


def sample_next_token(
    logits: torch.Tensor,
    generator: torch.Generator,
    input_ids: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """Draw one token per row from softmax(process_logits(...)) (same arguments).

    Returns an int64 tensor (B,): row b's token is drawn from the distribution
    softmax(process_logits(logits, ...)[b]), independently of the other rows, so a removed
    token is never drawn. Every random number must come from `generator` (a
    torch.Generator, e.g. `torch.multinomial(probs, 1, generator=generator)`): the same seed
    gives the same tokens, and torch's global random state is neither used nor reseeded.
    How you turn the generator's numbers into a draw is up to you: the checks test the
    distribution of the draws (a chi-square test over many rows), not particular tokens.
    """
    raise NotImplementedError
