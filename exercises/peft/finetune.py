"""LoRA fine-tuning: train low-rank adapters on a frozen causal LM and return them.

LoRA (Hu et al. 2021) freezes every weight W (out_features, in_features) of the base model and
learns, for each adapted nn.Linear, two small matrices A (r, in_features) and B (out_features, r):

    y = x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T

A starts random and B starts at ZERO, so the adapted model starts exactly equal to the base;
only A and B are trained. What is saved and shared is the adapter state dict alone: a few
thousand numbers instead of the whole model.

You may use the peft library (LoraConfig, get_peft_model, get_peft_model_state_dict) or write
the adapters yourself; either way follow the conventions below exactly, since the judge replays
a short run of yours with its own loop and compares.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def finetune(
    model: torch.nn.Module,
    batches: torch.Tensor,
    *,
    r: int,
    alpha: float,
    target_modules: Sequence[str],
    lr: float,
) -> dict[str, torch.Tensor]:
    """Fine-tune `model` with LoRA on `batches`; return the trained adapters' state dict.

    - `model`: a Hugging Face causal LM (a tiny transformers LlamaForCausalLM, float32, eager
      attention, no dropout anywhere), already built with its weights. You may modify it in
      place (get_peft_model does: each target nn.Linear becomes a wrapper whose frozen weight is
      `base_layer.weight`), but every base weight must end BITWISE equal to how it came in: the
      judge compares them with torch.equal after your call. Freeze them; do not copy into them.
    - `batches`: int64 (S, B, T) token ids, no padding; S may be 0 (then return the adapters as
      initialised). Train one optimiser step per batch, in order.
    - Adapters: on every nn.Linear whose name ENDS with one of `target_modules` (peft's
      matching of a list of names: "q_proj" adapts model.layers.*.self_attn.q_proj). No bias
      is trained and no dropout is used. Scaling alpha / r (not rsLoRA's alpha / sqrt(r)).
      A (r, in_features) is initialised from torch's GLOBAL generator (peft: kaiming-uniform
      with a = sqrt(5)), so two calls after the same torch.manual_seed start from the same A;
      B (out_features, r) starts at zeros. Nothing else is trained.
    - The loss of a batch x (B, T): the model's causal-LM loss with labels = x, i.e. the
      cross-entropy of logits[:, t] against x[:, t + 1], averaged over all B * (T - 1)
      predictions (what `model(input_ids=x, labels=x).loss` is).
    - The step: torch.optim.AdamW over the adapter parameters only, with lr=`lr`,
      weight_decay=0.0 and the default betas=(0.9, 0.999), eps=1e-8. For each batch:
      zero the gradients, compute the loss, backward, step.

    Returns {name: tensor} with exactly peft's adapter keys, the keys of
    `peft.get_peft_model_state_dict(peft_model)`: for each adapted module at path P (as in
    model.named_modules(), e.g. "model.layers.0.self_attn.q_proj"),
    "base_model.model." + P + ".lora_A.weight" -> A (r, in_features) and
    "base_model.model." + P + ".lora_B.weight" -> B (out_features, r), float32, detached.

    How you are judged: the judge loads the returned adapters (peft's set_peft_model_state_dict)
    into its own copy of the model and measures the loss on held-out batches; it also replays a
    short run from the adapters your code initialises (a call with S = 0 under the same seed).
    """
    raise NotImplementedError
