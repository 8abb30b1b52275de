"""Masked language modelling (BERT): the 80/10/10 corruption and the MLM loss.

An encoder such as BERT sees the whole sequence at once, so "predict the next token" makes
no sense for it. Instead about 15% of the tokens are chosen ("selected") and the model must
recover the ORIGINAL token at each selected position from the corrupted input. Of the
selected tokens:

- 80% are replaced by the [MASK] token,
- 10% are replaced by a random token drawn uniformly from the whole vocabulary,
- 10% are left unchanged.

The random and unchanged cases keep the model from learning that only [MASK] positions
matter (at fine-tuning time there is no [MASK]). Special tokens ([CLS], [SEP], padding) are
never selected. The labels hold the original token at every selected position and -100 (the
ignore index of the loss) everywhere else, so the loss is computed over the selected
positions only.

This is exactly transformers' `DataCollatorForLanguageModeling` (mlm=True,
mask_replace_prob=0.8, random_replace_prob=0.1) with its `seed` argument, and with the same
seed your result must be identical to the collator's, token for token. That requires the
same random draws, from the same generator, in the same order: see `mask_tokens`.
The collator itself is off limits in your code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    special_tokens_mask: torch.Tensor | None = None,
    mlm_probability: float = 0.15,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt `input_ids` for MLM; returns (masked_input_ids, labels).

    Arguments:
    - `input_ids`: int64 tensor (B, T) on the CPU, B >= 1 and T >= 1, ids in [0, vocab_size).
    - `mask_token_id`: the id of [MASK], in [0, vocab_size).
    - `vocab_size`: random replacements are drawn from ALL ids 0 .. vocab_size - 1, special
      ids, [MASK] and the original token itself included.
    - `special_tokens_mask`: bool tensor (B, T), True where the token must never be selected
      ([CLS], [SEP], padding: the caller marks padding here too). None: no position is special.
    - `mlm_probability`: a Python float in [0, 1], the chance that a non-special token is selected.
    - `seed`: when an int, create `generator = torch.Generator().manual_seed(seed)` FIRST and
      pass it to every draw below; when None, use `generator=None` (torch's global RNG).

    The draws, exactly in this order, each over the FULL (B, T) shape (special positions
    included), with probability tensors made by `torch.full(shape, p)` (default float32 dtype):

    1. probability = torch.full(shape, mlm_probability), set to 0.0 where special_tokens_mask;
       selected = torch.bernoulli(probability, generator=generator).bool()
    2. replaced = torch.bernoulli(torch.full(shape, 0.8), generator=generator).bool() & selected
    3. randomized = (torch.bernoulli(torch.full(shape, 0.5), generator=generator).bool()
                     & selected & ~replaced)
       (0.5 of the remaining 20% is 10% overall; chosen among the selected tokens that were
       NOT replaced by [MASK])
    4. random_words = torch.randint(vocab_size, shape, dtype=torch.long, generator=generator)

    Always make all four draws, even when nothing is selected. Then:

    - masked_input_ids: a copy of input_ids with [MASK] (mask_token_id) where `replaced` and
      random_words where `randomized`; every other position keeps its token.
    - labels: a copy of the ORIGINAL input_ids with -100 wherever not `selected`.

    Both are new int64 tensors of shape (B, T). `input_ids` and `special_tokens_mask` are not
    modified in place (transformers' collator does overwrite its batch; you must not).
    """
    raise NotImplementedError


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The MLM loss: mean cross-entropy over the selected positions (labels != -100).

    - `logits`: floating-point tensor (B, T, V), the encoder's scores for the token at each position.
    - `labels`: int64 tensor (B, T) as `mask_tokens` returns them: the original token at
      selected positions, -100 elsewhere.

    NO shift: unlike a causal LM, the logits at position t are scored against labels[:, t],
    the token that stood at position t itself (the model sees the whole corrupted sequence
    and fills in the gaps). Computed in float32 (upcast with `logits.float()` first), it is

        sum over (b, t) with labels[b, t] != -100 of -log softmax(logits[b, t])[labels[b, t]]
        -------------------------------------------------------------------------------------
                            number of (b, t) with labels[b, t] != -100

    returned as a 0-d float32 tensor that stays differentiable with respect to `logits`.
    With no selected position at all it is 0 / 0 = NaN. This equals
    `BertForMaskedLM(...)(input_ids, labels=labels).loss` for float32 logits.
    torch.nn.functional.cross_entropy is allowed.
    """
    raise NotImplementedError
