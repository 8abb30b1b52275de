"""Loading a locally saved causal LM and its tokenizer with `from_pretrained`, and generating text.

A directory written by `model.save_pretrained(path)` and `tokenizer.save_pretrained(path)`
(config.json, model.safetensors, generation_config.json, tokenizer.json, tokenizer_config.json)
is all `from_pretrained(path)` needs: no hub, no network. The judge saves a tiny random model
(GPT-2 or Llama) and a word-level tokenizer of the grader's synthetic language to a temporary
directory, calls your functions with that path, and compares what you return with its own
`model.generate` on the same files: the ids exactly, the texts exactly.

The conventions below are the usual ones for batched generation with transformers; each is
a way to get a different answer if missed.

- Loading: `AutoModelForCausalLM.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path)`
  (float32, as saved); the model in eval mode.
- Padding: prompts of different lengths are padded on the LEFT (`tokenizer.padding_side =
  "left"`), so every row ends with its last real token and the next token is predicted from
  it; with right padding, a short row would continue after its padding.
- Pad token: if the tokenizer has none (`tokenizer.pad_token is None`), use the end-of-sequence
  token: `tokenizer.pad_token = tokenizer.eos_token`. A tokenizer with its own pad token
  keeps it.
- The attention mask from the tokenizer is always passed to generate: when pad == eos,
  generate cannot tell padding from real tokens by their ids.
"""

from __future__ import annotations

from typing import Any

import torch


def load(path: str) -> tuple[Any, Any]:
    """Load (model, tokenizer) from the local directory `path`, ready for batched generation.

    model = AutoModelForCausalLM.from_pretrained(path), in eval mode, float32.
    tokenizer = AutoTokenizer.from_pretrained(path), with padding_side = "left" and, when it
    has no pad token, pad_token = eos_token (a tokenizer with a pad token keeps its own).
    Returns (model, tokenizer).
    """
    raise NotImplementedError


def generate_text(
    path: str,
    prompts: list[str],
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """Generate a continuation of each prompt with the model and tokenizer saved at `path`.

    1. (model, tokenizer) = load(path).
    2. batch = tokenizer(prompts, return_tensors="pt", padding=True): input_ids and
       attention_mask, (B, P), left-padded with the pad token (no special tokens are added
       beyond what the tokenizer adds by itself; this one adds none). `prompts` is a list of
       B >= 1 strings, each at least one token long.
    3. torch.manual_seed(seed), then model.generate(input_ids=..., attention_mask=...,
       max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, ...):
       - `max_new_tokens` counts the NEW tokens only (not the prompt; not `max_length`,
         which counts both).
       - Greedy when `do_sample` is False: pass do_sample=False and nothing else (temperature
         and top_k are ignored).
       - Sampling when `do_sample` is True: do_sample=True, temperature=temperature,
         top_k=top_k, passed explicitly (top_k=0 means no top-k filtering; generate's own
         default is top_k=50). Nothing else (top_p stays 1.0). The draws come from torch's
         global generator, seeded by torch.manual_seed(seed) just before generate.
       - Stopping is generate's own: a row stops at the model's end-of-sequence token (the
         tokenizer's eos token), keeps that token, and is then filled with pad_token_id;
         generation ends when every row has stopped or after max_new_tokens tokens.
    4. new_ids = the output of generate without the prompt's P columns: int64 (B, L), with
       L <= max_new_tokens (L < max_new_tokens only when every row stopped early).
    5. texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True): only the new text,
       with the eos and pad tokens left out (B strings; "" for a row that stopped at once).

    Returns (new_ids, texts). Runs without gradients.
    """
    raise NotImplementedError
