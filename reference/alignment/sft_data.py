"""Supervised fine-tuning data: a conversation rendered by the tokenizer's chat template,
tokenised, with labels only on what the assistant says."""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100


def _ids(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
    """The token ids of the rendered conversation; the template writes every special token itself."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    ids = _ids(tokenizer, messages, add_generation_prompt=False)
    input_ids = torch.tensor(ids, dtype=torch.long)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        # the prompt of turn i ends with the assistant header; the turn ends after its end token
        prompt = _ids(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _ids(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if prompt != upto[: len(prompt)] or upto != ids[: len(upto)]:
            raise ValueError(f"the chat template does not render message {i} as an extension of the ones before it")
        start, end = len(prompt), len(upto)
        labels[start:end] = input_ids[start:end]
    return {"input_ids": input_ids, "labels": labels}


def collate(
    examples: list[dict[str, Any]],
    pad_token_id: int,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    batch = len(examples)
    longest = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((batch, longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, longest), dtype=torch.long)
    labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)  # padding is never a target
    for b, example in enumerate(examples):
        n = len(example["input_ids"])
        where = slice(0, n) if padding_side == "right" else slice(longest - n, longest)
        input_ids[b, where] = torch.as_tensor(example["input_ids"], dtype=torch.long)
        labels[b, where] = torch.as_tensor(example["labels"], dtype=torch.long)
        attention_mask[b, where] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
