"""Checks for alignment.reward_model: the Bradley-Terry loss and last-real-token pooling.

Ground truth for the loss is TRL's RewardTrainer formula, written out here (trl is not a
dependency of the grader): `-logsigmoid(rewards_chosen - rewards_rejected - margin).mean()`,
computed in float64. Ground truth for pooling is the attention mask, read position by
position; transformers is the parity check where its rule agrees: a tiny
LlamaForSequenceClassification (random weights, eager attention, float32) pools its score
head's per-token outputs at the rightmost token that is not `pad_token_id`, which is the
mask's answer when pad != eos. Where the two differ (pad == eos: transformers skips each
sequence's own final EOS), the check says so and holds the mask's answer, and the student's
function called without a mask must give transformers' answer.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

# float32 results against a float64 truth
TOL = {"atol": 1e-6, "rtol": 1e-5}
VOCAB, PAD, EOS = 50, 0, 1


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: float | torch.Tensor | None = None) -> torch.Tensor:
    """TRL's RewardTrainer loss, in float64, returned as float32."""
    d = chosen.double() - rejected.double()
    if margin is not None:
        d = d - (margin.double() if isinstance(margin, torch.Tensor) else margin)
    return (-F.logsigmoid(d).mean()).float()


def last_real(real: torch.Tensor) -> list[int]:
    """The largest position t with real[b, t] True, row by row."""
    return [max(t for t in range(real.shape[1]) if bool(real[b, t])) for b in range(real.shape[0])]


def pooled(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return torch.stack([scores[b, t] for b, t in enumerate(last_real(real))])


def padded_batch(rng, lengths: list[int], T: int, side: str, pad: int = PAD, end_with_eos: bool = True):
    """Token ids (B, T) of the given real lengths, padded on `side` with `pad`, each ending in EOS; and the mask."""
    ids = torch.full((len(lengths), T), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        row = rng.randint(2, VOCAB, (n,))
        if end_with_eos:
            row[-1] = EOS
        where = slice(0, n) if side == "right" else slice(T - n, T)
        ids[b, where] = row
        mask[b, where] = 1
    return ids, mask


@pytest.mark.points(2)
def test_bradley_terry_loss(expect, rng):
    chosen = rng.randn(7, scale=2.0)
    rejected = rng.randn(7, scale=2.0)
    margin = rng.rand(7) * 2.0
    for m, what in ((None, "no margin"), (0.5, "margin=0.5"), (margin, "a margin per pair (7,)")):
        expect(lambda s, m=m: s.bradley_terry_loss(chosen, rejected, m), truth=bt_loss(chosen, rejected, m), **TOL,
               name=f"bradley_terry_loss(7 pairs, {what}) vs TRL's -logsigmoid(chosen - rejected - margin).mean()")
    one = rng.randn(1)
    expect(lambda s: s.bradley_terry_loss(one, one + 1.0), truth=bt_loss(one, one + 1.0), **TOL,
           name="bradley_terry_loss(one pair, chosen 1 below rejected): log(1 + e) = 1.3133")


def test_bradley_terry_large_differences(expect, rng):
    # differences of hundreds: sigmoid(-200) underflows to 0 in float32, so log(sigmoid) is -inf
    chosen = torch.tensor([150.0, -200.0, 3.0, 400.0, -90.0])
    rejected = torch.tensor([-150.0, 100.0, -1.0, 0.0, 30.0])
    expect(lambda s: s.bradley_terry_loss(chosen, rejected), truth=bt_loss(chosen, rejected), **TOL,
           name="bradley_terry_loss(reward differences 300, -300, 4, 400, -120): finite, about (300 + 120) / 5")
    expect(lambda s: s.bradley_terry_loss(chosen, rejected, margin=50.0), truth=bt_loss(chosen, rejected, 50.0),
           **TOL, name="bradley_terry_loss(the same pairs, margin=50.0)")


def test_bradley_terry_gradients(expect, rng):
    chosen = rng.randn(6, scale=2.0)
    rejected = rng.randn(6, scale=2.0)
    margin = rng.rand(6)
    expect.gradients(lambda s: s.bradley_terry_loss, [chosen, rejected, margin], truth=bt_loss, atol=1e-6, rtol=1e-5,
                     name="bradley_terry_loss(chosen (6,), rejected (6,), margin (6,)) under autograd")


@pytest.mark.points(2)
def test_pool_left_and_right_padding(expect, rng):
    T = 9
    scores = rng.randn(4, T, scale=2.0)
    lengths = [9, 4, 1, 6]
    for side in ("right", "left"):
        _, mask = padded_batch(rng, lengths, T, side)
        expect(lambda s, m=mask: s.pool_last_token(scores, attention_mask=m), truth=pooled(scores, mask != 0),
               **TOL, name=f"pool_last_token(scores (4, {T}), attention_mask with {side} padding, real lengths "
                           f"{lengths}): the score at each row's last position where the mask is 1")
    _, mask = padded_batch(rng, [3, 7, 2], 7, "right")
    multi = rng.randn(3, 7, 2)
    for m, what in ((mask.bool(), "bool"), (mask.float(), "float")):
        expect(lambda s, m=m: s.pool_last_token(multi, attention_mask=m), truth=pooled(multi, mask != 0), **TOL,
               name=f"pool_last_token(scores (3, 7, 2), a {what} attention_mask with right padding): shape (3, 2)")
    _, right = padded_batch(rng, lengths, T, "right")
    expect.gradients(lambda s: s.pool_last_token, [scores, right], truth=lambda x, m: pooled(x, m != 0),
                     atol=0.0, rtol=0.0,
                     name=f"pool_last_token(scores (4, {T}), attention_mask with right padding) under autograd: "
                          "gradient 1 at each row's last real token, 0 elsewhere")


@pytest.mark.points(2)
def test_pool_when_pad_is_eos(expect, rng):
    """pad_token_id == eos_token_id, as when a tokenizer without a pad token reuses its EOS:
    each sequence ends with its own EOS, which is real and is where the reward is read. The
    mask says so; the pad id cannot tell that EOS from padding (transformers pools the token
    before it). Called without a mask, the function follows transformers' rule."""
    T = 8
    scores = rng.randn(3, T, scale=2.0)
    for side in ("right", "left"):
        ids, mask = padded_batch(rng, [5, 8, 3], T, side, pad=EOS)
        expect(lambda s, i=ids, m=mask: s.pool_last_token(scores, attention_mask=m, input_ids=i, pad_token_id=EOS),
               truth=pooled(scores, mask != 0), **TOL,
               name=f"pool_last_token(scores (3, {T}), attention_mask, input_ids, pad_token_id = eos_token_id = {EOS}, "
                    f"{side} padding): the mask decides, so each row's reward is read at its final EOS")
        expect(lambda s, i=ids: s.pool_last_token(scores, input_ids=i, pad_token_id=EOS),
               truth=pooled(scores, ids != EOS), **TOL,
               name=f"pool_last_token(scores (3, {T}), no attention_mask, input_ids, pad_token_id = eos = {EOS}, "
                    f"{side} padding): transformers' rule, the last token that is not the pad id")
    expect(lambda s: s.pool_last_token(scores), truth=scores[:, -1], **TOL,
           name=f"pool_last_token(scores (3, {T})) with neither a mask nor a pad id: position T - 1")


@functools.cache
def hf_reward_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(7)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, num_labels=1,
                         pad_token_id=PAD, bos_token_id=2, eos_token_id=EOS, initializer_range=0.3,
                         attn_implementation="eager")
    return LlamaForSequenceClassification(config).float().eval()


@pytest.mark.points(2)
def test_matches_transformers_sequence_classification(expect, rng):
    """Parity where transformers' pad-id rule and the mask agree: pad (0) != eos (1)."""
    model = hf_reward_model()
    for side in ("right", "left"):
        ids, mask = padded_batch(rng, [11, 6, 2, 9], 11, side)
        with torch.no_grad():
            scores = model.score(model.model(input_ids=ids, attention_mask=mask).last_hidden_state)  # (4, 11, 1)
            rewards = model(input_ids=ids, attention_mask=mask).logits  # (4, 1)
        expect(lambda s, x=scores, m=mask: s.pool_last_token(x, attention_mask=m), truth=rewards, **TOL,
               name=f"pool_last_token(the score head's per-token outputs (4, 11, 1), attention_mask, {side} padding) vs "
                    "LlamaForSequenceClassification(input_ids, attention_mask).logits (pad 0 != eos 1)")
        expect(lambda s, x=scores, i=ids: s.pool_last_token(x, input_ids=i, pad_token_id=PAD), truth=rewards, **TOL,
               name=f"pool_last_token(per-token scores (4, 11, 1), input_ids, pad_token_id=0, no mask, {side} padding) "
                    "vs LlamaForSequenceClassification(...).logits")


@pytest.mark.hidden
def test_hidden_other_cases(expect, rng):
    """What the public checks do not show: bfloat16 rewards with differences in the hundreds
    and a margin tensor (a float32 loss), a batch of one sequence of one token, left padding
    with pad == eos on (B, T, K) scores given only a float mask, and odd sizes."""
    chosen = (rng.randn(5, scale=150.0)).to(torch.bfloat16)
    rejected = (rng.randn(5, scale=150.0)).to(torch.bfloat16)
    margin = rng.rand(5) * 3.0
    expect(lambda s: s.bradley_terry_loss(chosen, rejected, margin), truth=bt_loss(chosen, rejected, margin), **TOL,
           name="bradley_terry_loss(bfloat16 rewards ~ +-150, a float32 margin (5,)): a float32 loss")
    single = rng.randn(1, 1, 3)
    expect(lambda s: s.pool_last_token(single, attention_mask=torch.ones(1, 1)), truth=single[:, 0], **TOL,
           name="pool_last_token(scores (1, 1, 3), attention_mask [[1.0]])")
    scores = rng.randn(5, 13, 2, scale=3.0)
    ids, mask = padded_batch(rng, [13, 1, 7, 12, 4], 13, "left", pad=EOS)
    expect(lambda s: s.pool_last_token(scores, attention_mask=mask.float(), input_ids=ids, pad_token_id=EOS),
           truth=pooled(scores, mask != 0), **TOL,
           name="pool_last_token(scores (5, 13, 2), float attention_mask, left padding, pad_token_id = eos)")
    _, mask = padded_batch(rng, [2, 13, 5, 1, 9], 13, "right")
    expect(lambda s: s.pool_last_token(scores, attention_mask=mask), truth=pooled(scores, mask != 0), **TOL,
           name="pool_last_token(scores (5, 13, 2), attention_mask, right padding, real lengths [2, 13, 5, 1, 9])")
