"""Supervised fine-tuning (SFT) data: chat template, tokens, and labels on the assistant only.

A chat model is fine-tuned on conversations, lists of messages
`{"role": "system" | "user" | "assistant", "content": str}`. The tokenizer carries a jinja2
chat template (`tokenizer.chat_template`) that turns the list into one string, special tokens
included; for instance (the judge's templates differ from this one and between checks):

    <|bos|><|system|>be brief<|end|><|user|>hi there<|end|><|assistant|>hello<|end|>

The model is trained to produce what the ASSISTANT says and nothing else: the system prompt,
the user's turns and every role header are given, never predicted. So the labels copy the
input ids on assistant tokens and hold -100 (PyTorch's and Hugging Face's ignore_index)
everywhere else.

Conventions (all of them are checked):
- Rendering: `tokenizer.apply_chat_template(messages, tokenize=False,
  add_generation_prompt=...)` gives the text; tokenise it with
  `tokenizer(text, add_special_tokens=False)["input_ids"]` (the template writes every special
  token itself, BOS included, so the tokenizer must not add any). This is what
  `apply_chat_template(messages, tokenize=True)` does.
- Which tokens are trained, for every message i whose role is "assistant" (EVERY assistant
  turn of a multi-turn conversation, not only the last): let
      prompt_i = the ids of messages[:i] rendered with add_generation_prompt=True
                 (the conversation so far, ending with the assistant's header),
      upto_i   = the ids of messages[:i + 1] rendered with add_generation_prompt=False;
  the tokens at positions len(prompt_i) .. len(upto_i) - 1 of the full conversation's ids are
  trained: the assistant's content AND the template's end-of-turn token after it (the model
  must learn to stop). The header before them (one token or several, whatever the template
  writes) is not. Every other position is -100: BOS, the system and user turns, headers.
  The judge's templates render each message as an extension of the ones before it (prompt_i
  and upto_i are prefixes of the full ids), and a conversation never starts with an
  assistant message. Do not rely on the template marking the assistant's part with
  `{% generation %}` (`return_assistant_tokens_mask`): some of the judge's templates do not.
- Labels are NOT shifted: labels[t] is input_ids[t] (or -100), the same length as input_ids.
  The model shifts them itself (Hugging Face's `model(input_ids, labels=labels)`: logits at t
  are scored against labels[t + 1]).
- A conversation without an assistant turn has every label -100.

Shapes and dtypes: 1-d int64 (torch.long) tensors for one conversation; 2-d int64 tensors
(B, T) for a batch. Inputs are never modified in place.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """One conversation, tokenised, with its SFT labels.

    `tokenizer` is a Hugging Face fast tokenizer with a `chat_template`; `messages` is a list
    of {"role", "content"} dicts (first message "system" or "user").

    Returns {"input_ids": ids, "labels": labels}: two int64 tensors of the same shape (T,),
    ids those of `apply_chat_template(messages, tokenize=False)` tokenised without adding
    special tokens, and labels[t] = ids[t] on the trained positions of every assistant turn
    (its content and the end-of-turn token after it, as the module docstring defines them),
    -100 everywhere else.
    """
    raise NotImplementedError


def collate(
    examples: list[dict[str, Any]],
    pad_token_id: int,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Pad a list of examples (each {"input_ids", "labels"}, 1-d int64 tensors or lists of
    ints, of equal length within an example) into one batch.

    Returns {"input_ids", "attention_mask", "labels"}, each an int64 tensor (B, T) with B =
    len(examples) and T the longest example's length. Row b holds example b's tokens at its
    first n_b positions (padding_side="right") or its last n_b positions ("left"); the other
    positions are padding: input_ids = pad_token_id, attention_mask = 0, labels = -100.
    attention_mask is 1 on the example's own tokens. The example's labels are copied as they
    are (already -100 on the prompt): padding is decided by POSITION, never by comparing ids
    with pad_token_id (the pad token may be the end-of-turn token, which is trained).
    Any other padding_side raises ValueError.
    """
    raise NotImplementedError
