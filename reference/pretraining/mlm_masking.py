"""BERT's masked-language-modelling corruption (80/10/10) and the MLM loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    special_tokens_mask: torch.Tensor | None = None,
    mlm_probability: float = 0.15,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    shape = input_ids.shape

    # 1. which positions are predicted: probability 0 for special tokens, so never chosen
    probability = torch.full(shape, mlm_probability)
    if special_tokens_mask is not None:
        probability.masked_fill_(special_tokens_mask.bool(), 0.0)
    selected = torch.bernoulli(probability, generator=generator).bool()

    # 2. 80% of the selected become [MASK]
    replaced = torch.bernoulli(torch.full(shape, 0.8), generator=generator).bool() & selected
    # 3. half of the remaining 20% (10% overall) become a random word; the rest stay as they are
    randomized = torch.bernoulli(torch.full(shape, 0.5), generator=generator).bool() & selected & ~replaced
    # 4. the random words, drawn for every position, any id of the vocabulary
    random_words = torch.randint(vocab_size, shape, dtype=torch.long, generator=generator)

    # labels are taken from the untouched input: the target is always the original token
    labels = input_ids.clone()
    labels[~selected] = -100

    masked = input_ids.clone()
    masked[replaced] = mask_token_id
    masked[randomized] = random_words[randomized]
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # no shift: the logits at position t predict the token that stood at position t itself
    logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
