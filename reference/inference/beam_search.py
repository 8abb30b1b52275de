"""Beam search with a length penalty, as transformers' `generate(num_beams=..., do_sample=False)`."""

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
    prompt = input_ids.tolist()
    running: list[tuple[list[int], float]] = [([], 0.0)]  # generated tokens, sum of their log-probs
    finished: list[tuple[list[int], float]] = []  # generated tokens, length-penalised score
    for step in range(max_new_tokens):
        ids = torch.tensor([prompt + tokens for tokens, _ in running], dtype=torch.long)
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids).logits[:, -1, :].float(), dim=-1)
        vocab = log_probs.size(-1)
        # every one-token extension of every running beam, ranked by its sum of log-probs
        scores = torch.tensor([score for _, score in running])[:, None] + log_probs
        top_scores, top_index = scores.reshape(-1).topk(min(2 * num_beams, scores.numel()))
        length = step + 1  # generated tokens, the new one (EOS too) included
        last = length == max_new_tokens
        next_running: list[tuple[list[int], float]] = []
        for rank, (score, index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
            beam, token = divmod(index, vocab)
            tokens = running[beam][0] + [token]
            if token == eos_token_id or last:
                # only the num_beams best candidates may finish; the rest are spares for running
                if rank < num_beams:
                    finished.append((tokens, score / length**length_penalty))
            elif len(next_running) < num_beams:
                next_running.append((tokens, score))
        finished = sorted(finished, key=lambda h: h[1], reverse=True)[:num_beams]
        running = next_running
        if last or not running:
            break
        if len(finished) == num_beams:
            if early_stopping is True:
                break
            # can the best running beam still beat the worst finished hypothesis?
            horizon = max_new_tokens if early_stopping == "never" and length_penalty > 0 else length
            if running[0][1] / horizon**length_penalty <= finished[-1][1]:
                break
    return finished[:num_return_sequences]
