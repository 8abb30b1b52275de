"""Checks for pretraining.clm_loss: parity with a Hugging Face causal LM's own `loss`.

Ground truth is transformers itself: tiny GPT2LMHeadModel and LlamaForCausalLM (random
weights, eager attention, float32) give `model(input_ids, labels=labels).loss`, and
transformers' `ForCausalLMLoss` (what those models call, with num_items_in_batch=None) scores
hand-made logits, bfloat16 ones included. F.cross_entropy on the shifted, flattened tensors is
the second opinion. Only tensors cross to the student: the judge runs the models.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from grader.compare import check

# float32 end to end; the only difference from HF is the order of the final sum.
TOL = {"atol": 1e-5, "rtol": 1e-5}
VOCAB = 61
PAD = 0


def hf_loss(logits, labels=None, ignore_index=-100, shift_labels=None):
    """transformers' ForCausalLMLoss with num_items_in_batch=None: what model(..., labels=).loss is."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(logits, labels, logits.size(-1), ignore_index=ignore_index, shift_labels=shift_labels)


def torch_loss(logits, labels, ignore_index=-100):
    """F.cross_entropy on the hand-shifted tensors: logits[:, :-1] against labels[:, 1:], in float32."""
    pred = logits[:, :-1].float()
    return F.cross_entropy(pred.reshape(-1, pred.size(-1)), labels[:, 1:].reshape(-1), ignore_index=ignore_index)


def hf_per_sequence(logits, labels, ignore_index=-100):
    return torch.stack([hf_loss(logits[b : b + 1], labels[b : b + 1], ignore_index) for b in range(len(labels))])


@functools.cache
def hf_model(kind: str):
    """A tiny random causal LM; initializer_range 0.3 so per-token losses differ (not all ~log V)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    common = {"vocab_size": VOCAB, "initializer_range": 0.3, "bos_token_id": 1, "eos_token_id": 1,
              "pad_token_id": PAD, "attn_implementation": "eager"}
    torch.manual_seed(1234)
    if kind == "gpt2":
        config = GPT2Config(n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, **common)
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                             **common)
        model = LlamaForCausalLM(config)
    return model.float().eval()


def masked_labels(ids, prompt_lens, pad_lens):
    """labels = ids with each row's first prompt_lens[b] tokens and last pad_lens[b] tokens -100."""
    labels = ids.clone()
    T = ids.size(1)
    for b, (p, q) in enumerate(zip(prompt_lens, pad_lens)):
        labels[b, :p] = -100
        labels[b, T - q :] = -100
    return labels


@pytest.mark.points(3)
def test_matches_hf_model_loss(expect, rng):
    for kind, name in (("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")):
        model = hf_model(kind)
        r = rng.child(kind)
        ids = r.randint(2, VOCAB, (3, 13))
        # row 0: a 5-token prompt that is not trained on; row 1: 4 right-padding tokens; row 2: all
        labels = masked_labels(ids, prompt_lens=(5, 0, 0), pad_lens=(0, 4, 0))
        ids[1, -4:] = PAD
        for lab, what in ((ids, "labels = input_ids"), (labels, "prompt and padding labels -100")):
            with torch.no_grad():
                out = model(ids, labels=lab)
            what = f"{name} logits {tuple(out.logits.shape)}, {what}"
            for truth, against in ((out.loss, f"{name}(input_ids, labels=labels).loss"),
                                   (torch_loss(out.logits, lab), "F.cross_entropy(logits[:, :-1], labels[:, 1:])")):
                expect(lambda s, x=out.logits, y=lab: s.causal_lm_loss(x, y), truth=truth, **TOL,
                       name=f"causal_lm_loss({what}) vs {against}")


@pytest.mark.points(2)
def test_token_mean_not_mean_of_means(expect, rng):
    # rows with 1, 15, 3 and 8 counted targets: a mean of per-row means weighs the 1-target row
    # 15 times too much, and a denominator of B*(T-1) = 60 shrinks the loss by a lot
    logits = rng.randn(4, 16, 37, scale=3.0)
    ids = rng.randint(0, 37, (4, 16))
    labels = masked_labels(ids, prompt_lens=(15, 0, 6, 2), pad_lens=(0, 0, 7, 5))
    # make the lone target of row 0 a surprising one so the two reductions are far apart
    logits[0, 14, labels[0, 15]] = -12.0
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=torch_loss(logits, labels), **TOL,
           name="causal_lm_loss(rows with 1, 15, 3 and 8 counted targets, the rest -100) vs the sum over all "
                "counted targets / their number (F.cross_entropy on the shifted tensors)")


@pytest.mark.points(2)
def test_per_sequence(expect, rng):
    logits = rng.randn(5, 10, 29, scale=2.5)
    ids = rng.randint(0, 29, (5, 10))
    # row 3 has no counted target at all (only labels[3, 0], which is never a target, survives)
    labels = masked_labels(ids, prompt_lens=(0, 4, 0, 1, 8), pad_lens=(0, 0, 3, 0, 0))
    labels[3, 1:] = -100
    expect(lambda s: s.causal_lm_loss_per_sequence(logits, labels), truth=hf_per_sequence(logits, labels), **TOL,
           name="causal_lm_loss_per_sequence(logits (5, 10, 29), labels with -100; row 3 has no target)"
                " vs ForCausalLMLoss of each row alone (NaN for row 3)")


@pytest.mark.points(2)
def test_bfloat16_logits_upcast(expect, rng):
    # large-ish bfloat16 logits: a bfloat16 log-softmax/mean would be off by ~0.1 and bfloat16-typed
    logits = (rng.randn(3, 12, 50, scale=8.0) + 200.0).to(torch.bfloat16)
    ids = rng.randint(0, 50, (3, 12))
    labels = masked_labels(ids, prompt_lens=(3, 0, 0), pad_lens=(0, 2, 0))
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=hf_loss(logits, labels), **TOL,
           name="causal_lm_loss(bfloat16 logits (3, 12, 50) near 200) vs ForCausalLMLoss, which upcasts to float32")
    expect(lambda s: s.causal_lm_loss_per_sequence(logits, labels), truth=hf_per_sequence(logits, labels), **TOL,
           name="causal_lm_loss_per_sequence(bfloat16 logits (3, 12, 50)) (float32 expected)")


def test_large_logits(expect, rng):
    # float32 logits in the thousands: exp() would overflow without a max-shifted log-softmax
    logits = rng.randn(2, 7, 19, scale=1500.0) + 3000.0
    ids = rng.randint(0, 19, (2, 7))
    labels = masked_labels(ids, prompt_lens=(2, 0), pad_lens=(0, 1))
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=hf_loss(logits, labels), atol=1e-3, rtol=1e-5,
           name="causal_lm_loss(float32 logits ~ 3000 +- 1500) vs ForCausalLMLoss")


def test_one_target_and_no_target(expect, rng):
    # T = 2: the only target is labels[:, 1], scored by logits[:, 0]
    logits = rng.randn(3, 2, 11, scale=3.0)
    labels = rng.randint(0, 11, (3, 2))
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=hf_loss(logits, labels), **TOL,
           name="causal_lm_loss(T = 2: one target per row) vs ForCausalLMLoss")
    expect(lambda s: s.causal_lm_loss_per_sequence(logits, labels), truth=hf_per_sequence(logits, labels), **TOL,
           name="causal_lm_loss_per_sequence(T = 2: one target per row)")
    # T = 1 (nothing to predict) and a batch whose every target is ignored: 0 / 0 = NaN
    logits = rng.randn(2, 1, 11)
    labels = rng.randint(0, 11, (2, 1))
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=hf_loss(logits, labels), **TOL,
           name="causal_lm_loss(T = 1) vs ForCausalLMLoss: no target, NaN")
    logits = rng.randn(2, 5, 11)
    labels = torch.full((2, 5), -100)
    labels[:, 0] = 3  # position 0 is never a target, whatever its label
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=hf_loss(logits, labels), **TOL,
           name="causal_lm_loss(every target -100 (only labels[:, 0] set)) vs ForCausalLMLoss: no target, NaN")


def test_custom_ignore_index(expect, rng):
    logits = rng.randn(3, 9, 23, scale=2.0)
    ids = rng.randint(1, 23, (3, 9))
    # ignore_index may be a real class id (here 0, as if padding were labelled with its own id)
    labels = ids.clone()
    labels[0, :4] = 0
    labels[2, 6:] = 0
    expect(lambda s: s.causal_lm_loss(logits, labels, ignore_index=0), truth=hf_loss(logits, labels, ignore_index=0),
           **TOL, name="causal_lm_loss(labels with 0 on prompt and padding, ignore_index=0) vs "
                       "ForCausalLMLoss(ignore_index=0)")
    labels = labels.masked_fill(labels == 0, -1)
    expect(lambda s: s.causal_lm_loss(logits, labels, ignore_index=-1), truth=hf_loss(logits, labels, ignore_index=-1),
           **TOL, name="causal_lm_loss(labels with -1 on prompt and padding, ignore_index=-1) vs "
                       "ForCausalLMLoss(ignore_index=-1)")
    expect(lambda s: s.causal_lm_loss_per_sequence(logits, labels, ignore_index=-1),
           truth=hf_per_sequence(logits, labels, ignore_index=-1), **TOL,
           name="causal_lm_loss_per_sequence(labels with -1, ignore_index=-1)")


def expected_shift(ids, pad_token_id, ignore_index):
    """Written out position by position: out[b, t] = ids[b, t + 1] unless that is padding."""
    B, T = ids.shape
    out = torch.full((B, T), ignore_index, dtype=torch.long)
    for b in range(B):
        for t in range(T - 1):
            nxt = int(ids[b, t + 1])
            if pad_token_id is None or nxt != pad_token_id:
                out[b, t] = nxt
    return out


@pytest.mark.points(2)
def test_shift_labels(expect, rng):
    ids = rng.randint(1, VOCAB, (4, 9))
    ids[0, -3:] = PAD  # right padding
    ids[1, :2] = PAD  # left padding
    ids[3, -1] = PAD  # one pad at the end
    cases = ((ids, PAD, -100, "rows with right and left padding, pad_token_id=0"),
             (ids, None, -100, "pad_token_id=None: shift only"),
             (ids, PAD, -1, "pad_token_id=0, ignore_index=-1"),
             (ids[:, :1].clone(), PAD, -100, "T = 1"))
    for x, pad, ign, what in cases:
        expect(lambda s, x=x, pad=pad, ign=ign: s.shift_labels(x, pad_token_id=pad, ignore_index=ign),
               truth=expected_shift(x, pad, ign), name=f"shift_labels({what})")


def test_shift_labels_give_the_model_loss(expect, rng):
    # HF scores logits[:, t] against shift_labels[:, t] at every t; with padding masked this must
    # equal model(input_ids, labels=input_ids with pad -> -100).loss
    model = hf_model("llama")
    ids = rng.randint(1, VOCAB, (3, 11))
    ids[0, -4:] = PAD
    ids[2, :3] = PAD
    labels = ids.masked_fill(ids == PAD, -100)
    with torch.no_grad():
        out = model(ids, labels=labels)

    def loss_with_shifted_labels(module):
        shifted = module.shift_labels(ids, pad_token_id=PAD)
        check(isinstance(shifted, torch.Tensor) and shifted.shape == ids.shape and shifted.dtype == torch.long,
              "shift_labels(input_ids (3, 11), pad_token_id=0) must return an int64 tensor of shape (3, 11)")
        return hf_loss(out.logits, shift_labels=shifted)

    expect(loss_with_shifted_labels, truth=out.loss, **TOL,
           name="ForCausalLMLoss(logits, shift_labels=shift_labels(input_ids, pad_token_id=0)) vs "
                "LlamaForCausalLM(input_ids, labels=input_ids with padding -100).loss")


def test_loss_is_differentiable(expect, rng):
    # the loss is trained on: its gradient w.r.t. the logits must reach them (no detach, no .item())
    logits = rng.randn(2, 6, 13, scale=2.0)
    labels = rng.randint(0, 13, (2, 6))
    labels[0, :3] = -100
    expect.gradients(lambda s: s.causal_lm_loss, [logits, labels], truth=torch_loss, atol=1e-6, rtol=1e-5,
                     name="causal_lm_loss(logits (2, 6, 13), labels) under autograd (input 0 is the logits) vs "
                          "F.cross_entropy(logits[:, :-1], labels[:, 1:])")


@pytest.mark.hidden
def test_hidden_other_dtypes_and_shapes(expect, rng):
    """Dtypes, shapes and inputs the public checks do not show: float64 logits (the loss is
    still computed and returned in float32), float16 logits near 1000, a batch of one row, odd
    sizes, a row with no target among several; and shift_labels on ids that already hold
    ignore_index entries, with a pad id that is not 0."""
    logits = rng.randn(1, 23, 101, dtype=torch.float64, scale=4.0)
    labels = rng.randint(0, 101, (1, 23))
    labels[0, :6] = -100
    expect(lambda s: s.causal_lm_loss(logits, labels), truth=hf_loss(logits, labels), **TOL,
           name="causal_lm_loss(float64 logits (1, 23, 101)) vs ForCausalLMLoss (a float32 loss)")
    expect(lambda s: s.causal_lm_loss_per_sequence(logits, labels), truth=hf_per_sequence(logits, labels), **TOL,
           name="causal_lm_loss_per_sequence(float64 logits (1, 23, 101)) (float32 expected)")
    half = (rng.randn(5, 9, 67, scale=6.0) + 1000.0).to(torch.float16)
    labels = masked_labels(rng.randint(0, 67, (5, 9)), prompt_lens=(3, 0, 0, 9, 1), pad_lens=(0, 2, 0, 0, 4))
    expect(lambda s: s.causal_lm_loss(half, labels), truth=hf_loss(half, labels), **TOL,
           name="causal_lm_loss(float16 logits (5, 9, 67) near 1000) vs ForCausalLMLoss (a float32 loss)")
    expect(lambda s: s.causal_lm_loss_per_sequence(half, labels), truth=hf_per_sequence(half, labels), **TOL,
           name="causal_lm_loss_per_sequence(float16 logits (5, 9, 67); row 3 has no target) (float32, NaN for row 3)")
    ids = rng.randint(0, 40, (2, 17))
    ids[0, 3:5] = -100
    ids[1, -5:] = 7
    expect(lambda s: s.shift_labels(ids, pad_token_id=7), truth=expected_shift(ids, 7, -100),
           name="shift_labels(input_ids (2, 17) holding -100 at [0, 3:5] and right padding 7, pad_token_id=7)")
