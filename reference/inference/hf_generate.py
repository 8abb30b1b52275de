"""Loading a locally saved causal LM and its tokenizer with from_pretrained, and generating from text prompts."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def load(path: str) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    # a batch of prompts of different lengths is padded on the left, so every row ends with a real token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@torch.no_grad()
def generate_text(
    path: str,
    prompts: list[str],
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    model, tokenizer = load(path)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    options: dict[str, Any] = {"do_sample": False}
    if do_sample:
        options = {"do_sample": True, "temperature": temperature, "top_k": top_k}
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **options,
    )
    # generate returns the (padded) prompt followed by the new tokens: keep the new ones only
    new_ids = out[:, batch["input_ids"].shape[1]:]
    return new_ids, tokenizer.batch_decode(new_ids, skip_special_tokens=True)
