"""LoRA fine-tuning of a tiny Hugging Face causal LM with peft; returns the adapter weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict


def finetune(
    model: torch.nn.Module,
    batches: torch.Tensor,
    *,
    r: int,
    alpha: float,
    target_modules: Sequence[str],
    lr: float,
) -> dict[str, torch.Tensor]:
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0,
                        bias="none")
    # get_peft_model wraps each target nn.Linear in place: its weight becomes base_layer.weight,
    # frozen, beside lora_A (kaiming-uniform) and lora_B (zeros)
    peft_model = get_peft_model(model, config)
    adapters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(adapters, lr=lr, weight_decay=0.0)
    for batch in batches:
        loss = peft_model(input_ids=batch, labels=batch).loss  # shifted inside, mean over B * (T - 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
