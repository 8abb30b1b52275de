"""Beam search with a length penalty: transformers' `generate(num_beams=..., do_sample=False)`.

Greedy decoding takes the single best token at every step and can walk into a dead end;
beam search keeps the `num_beams` best partial sequences ("beams") and extends all of them.
A sequence is scored by the sum of its tokens' log-probabilities, and since every extra
token adds a negative number, finished sequences are compared after a length penalty:

    score = (sum of the log-probs of the generated tokens) / L ** length_penalty

where L is the number of GENERATED tokens, the final EOS included (the prompt does not
count). length_penalty > 0 favours longer sequences, < 0 shorter ones, 0 compares raw sums.

This is exactly transformers' beam search (GenerationMixin._beam_search in transformers 5),
which is the ground truth of the checks (with a tiny GPT-2 of random weights), together
with a brute-force search over every sequence of a tiny vocabulary. `model.generate` and
transformers' own beam search are off limits in your code.
"""

from __future__ import annotations

from typing import Any

import torch


def beam_search(
    model: Any,
    input_ids: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    eos_token_id: int,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    num_return_sequences: int = 1,
) -> list[tuple[list[int], float]]:
    """Beam search from the prompt `input_ids`; returns the best finished sequences.

    Arguments:
    - `model`: a causal LM (a transformers model in eval mode). `model(ids)`, with `ids` an
      int64 tensor (N, t) of N sequences of equal length t, returns an output whose `.logits`
      is a float tensor (N, t, V); the next-token log-probs of sequence n are
      torch.log_softmax(out.logits[n, -1, :].float(), dim=-1). Call it on whole sequences
      (prompt + generated tokens, no attention mask, no cache needed), under torch.no_grad().
    - `input_ids`: int64 tensor (P,), the prompt, P >= 1.
    - `num_beams` >= 2 (with 1 transformers runs greedy decoding, another algorithm).
    - `max_new_tokens` >= 1: at most this many tokens are generated.
    - `eos_token_id`: the end-of-sequence id, in [0, V).
    - `length_penalty`: a float, the exponent in the score above.
    - `early_stopping`: True, False or the string "never" (see "Stopping").
    - `num_return_sequences`: 1 <= n <= num_beams.

    State: the RUNNING beams, each a list of generated tokens with its sum of log-probs
    (start: one empty beam with sum 0), and the FINISHED pool, at most num_beams
    (tokens, score) pairs. At step L = 1, 2, ..., max_new_tokens:

    1. Candidates: every running beam extended by every token of the vocabulary, with sum =
       the beam's sum + that token's log-prob. Rank them by sum, best first, and keep the
       best 2 * num_beams of them (all of them if there are fewer).
    2. Going down that ranking, a candidate whose new token is `eos_token_id`, or any
       candidate when L == max_new_tokens, is finished: if its rank is among the first
       num_beams (rank 0 .. num_beams-1) it enters the finished pool with score
       sum / L ** length_penalty; a finished candidate of rank num_beams or more is
       discarded. Every other candidate (not finished) becomes a running beam of the next
       step, the best first, until there are num_beams of them (the rest are dropped).
    3. The finished pool keeps its num_beams best scores (the others are dropped).
    4. Stopping, checked after each step, in this order:
       - L == max_new_tokens: stop.
       - Otherwise, once the pool holds num_beams hypotheses:
         early_stopping=True: stop;
         early_stopping=False: stop if best_running_sum / L ** length_penalty
             <= the worst score in the pool (best_running_sum: the sum of the best running
             beam, L: the tokens it has generated so far);
         early_stopping="never": the same test, but with max_new_tokens in place of L
             when length_penalty > 0 (the length the running beams could still reach).

    Returns the num_return_sequences best hypotheses of the pool, best first, as a list of
    (tokens, score): `tokens` a list of Python ints, the GENERATED tokens only (no prompt),
    ending with eos_token_id if the hypothesis finished with it; `score` a Python float,
    sum / L ** length_penalty with L = len(tokens).

    Precision: transformers keeps the sums in float32; float32 or Python floats both pass
    (scores are compared within 1e-4), and the checks use models whose candidates and scores
    never come closer than 1e-4 to each other where the algorithm compares them, so ties
    never decide.
    """
    raise NotImplementedError
