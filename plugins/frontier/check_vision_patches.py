"""Checks for frontier.vision_patches: patchify against F.unfold and a Conv2d, PatchEmbedding
against transformers' ViTEmbeddings with copied weights, clip_loss against CLIPModel's own
loss (return_loss=True) on the model's own projected embeddings, and the loss's properties.

Every model is built from a small config and gets the judge's seeded random weights through
`random_state_dict`, so nothing depends on torch's global random state.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel, ViTConfig
from transformers.models.vit.modeling_vit import ViTEmbeddings

from grader.checks import random_state_dict

# patchify only moves values: exact.
# Embeddings: float32 matmul vs conv, summation order over C*P*P <= 75 terms of O(1) values.
EMB_TOL = {"atol": 1e-5, "rtol": 1e-5}
# Loss: a scalar from logits up to 100 (the largest logit_scale CLIP allows); the log-sum-exp
# of such logits in float32 differs by a few ulps of 100 between implementations.
LOSS_TOL = {"atol": 1e-5, "rtol": 1e-5}


def _fan_in_scale(name: str, shape: tuple[int, ...]) -> float | None:
    """N(0, 1/fan_in) for matrices and convolutions, 0.1 for vectors; buffers and the 0-dim
    logit_scale are kept (the checks set logit_scale themselves)."""
    if "position_ids" in name or len(shape) == 0:
        return None
    if len(shape) == 1:
        return 0.1
    return math.prod(shape[1:]) ** -0.5 if name.endswith("weight") else 1.0


# ---------------------------------------------------------------- ViT embeddings


def _vit(image: int, patch: int, channels: int, hidden: int) -> ViTEmbeddings:
    cfg = ViTConfig(image_size=image, patch_size=patch, num_channels=channels, hidden_size=hidden,
                    hidden_dropout_prob=0.0)
    return ViTEmbeddings(cfg)


def _vit_weights(rng: Any, vit: ViTEmbeddings) -> dict[str, torch.Tensor]:
    # cls_token and position_embeddings are (1, n, D): O(1) values, so a missing or misplaced
    # one changes the output by far more than the tolerance.
    return random_state_dict(rng, vit, lambda name, shape: 1.0 if "token" in name or "position" in name
                             else _fan_in_scale(name, shape))


def _expect_vit(expect: Any, rng: Any, image: int, patch: int, channels: int, hidden: int, batch: int) -> None:
    vit = _vit(image, patch, channels, hidden)
    w = _vit_weights(rng, vit)
    x = rng.randn(batch, channels, image, image)

    def run(m: Any) -> Any:
        module = m.PatchEmbedding(image, patch, channels, hidden)
        module.load_state_dict(w)
        with torch.no_grad():
            return module(x)

    expect.hf_parity(run, vit, w, x, **EMB_TOL,
                     name=f"PatchEmbedding(image_size={image}, patch_size={patch}, num_channels={channels},"
                          f" hidden_size={hidden})(pixel_values of shape {tuple(x.shape)})")


def test_state_dict_names_and_shapes(expect):
    for image, patch, channels, hidden in ((12, 4, 5, 24), (6, 3, 1, 7)):
        expect(lambda m, a=(image, patch, channels, hidden): {k: tuple(v.shape) for k, v in
                                                              m.PatchEmbedding(*a).state_dict().items()},
               truth={k: tuple(v.shape) for k, v in _vit(image, patch, channels, hidden).state_dict().items()},
               name=f"PatchEmbedding({image}, {patch}, {channels}, {hidden}).state_dict(): parameter names"
                    " and shapes (ViTEmbeddings')")


@pytest.mark.points(2)
def test_patchify_matches_unfold(expect, rng):
    # F.unfold lists patches row-major and each patch's features channel, row, column: ViT's order.
    for shape, p in (((2, 3, 8, 12), 4), ((1, 5, 6, 6), 3), ((2, 1, 3, 5), 1), ((1, 2, 7, 7), 7)):
        x = rng.randn(*shape)
        expect(lambda m, x=x, p=p: m.patchify(x, p), truth=F.unfold(x, p, stride=p).transpose(1, 2),
               name=f"patchify(images of shape {shape}, patch_size={p}) vs F.unfold(images, {p}, stride={p})"
                    ".transpose(1, 2)")


def test_patchify_times_weight_is_the_conv(expect, rng):
    c, d, p = 3, 10, 4
    x = rng.randn(2, c, 8, 12)
    weight, bias = rng.randn(d, c, p, p, scale=0.3), rng.randn(d)
    truth = F.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)
    expect(lambda m: m.patchify(x, p) @ weight.reshape(d, -1).T + bias, truth=truth, **EMB_TOL,
           name=f"patchify(images of shape {tuple(x.shape)}, {p}) @ conv.weight.reshape({d}, -1).T + conv.bias"
                " vs the Conv2d(kernel_size=stride=4) flattened with flatten(2).transpose(1, 2)")


@pytest.mark.points(2)
def test_embeddings_match_vit(expect, rng):
    _expect_vit(expect, rng, image=12, patch=4, channels=5, hidden=24, batch=1)
    _expect_vit(expect, rng, image=12, patch=4, channels=5, hidden=24, batch=3)


def test_one_patch_and_one_pixel_patches(expect, rng):
    _expect_vit(expect, rng, image=6, patch=6, channels=3, hidden=8, batch=2)  # N = 1
    _expect_vit(expect, rng, image=5, patch=1, channels=2, hidden=6, batch=2)  # P = 1, N = 25


# ---------------------------------------------------------------- CLIP loss


def _clip(rng: Any, projection_dim: int = 12, hidden: int = 16) -> CLIPModel:
    """A small CLIPModel with the judge's random weights, eager attention, float32. eos_token_id
    is 2, so the text is pooled at the argmax of input_ids (the judge's ids put the largest id
    last)."""
    cfg = CLIPConfig(
        text_config={"vocab_size": 40, "hidden_size": hidden, "intermediate_size": 2 * hidden,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 12,
                     "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
        vision_config={"image_size": 8, "patch_size": 4, "hidden_size": hidden, "intermediate_size": 2 * hidden,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=projection_dim, attn_implementation="eager")
    model = CLIPModel(cfg)
    model.load_state_dict(random_state_dict(rng, model, _fan_in_scale))
    return model.eval()


def _clip_outputs(rng: Any, model: CLIPModel, batch: int) -> Any:
    ids = rng.randint(3, 38, (batch, 6))
    ids[:, -1] = 39  # the end-of-text token, pooled (the largest id)
    pixels = rng.randn(batch, 3, 8, 8)
    with torch.no_grad():
        return model(input_ids=ids, pixel_values=pixels, return_loss=True)


def _expect_clip(expect: Any, rng: Any, batch: int, logit_scale: float | None = None,
                 projection_dim: int = 12, rescale: bool = False) -> None:
    model = _clip(rng, projection_dim)
    if logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(logit_scale)
    out = _clip_outputs(rng, model, batch)
    img, txt = out.image_embeds, out.text_embeds  # already unit vectors
    what = ""
    if rescale:
        # cosine similarities do not depend on the norms: rows scaled by factors in [0.2, 5]
        img = img * torch.exp(rng.rand(batch, 1) * 3.2 - 1.6)
        txt = txt * torch.exp(rng.rand(batch, 1) * 3.2 - 1.6)
        what = " with each row multiplied by a random factor in [0.2, 5]"
    scale = model.logit_scale.detach().clone()
    expect(lambda m: m.clip_loss(img, txt, scale), truth=out.loss, **LOSS_TOL,
           name=f"clip_loss(CLIPModel's image_embeds and text_embeds (batch {batch}, dim {projection_dim}){what},"
                f" logit_scale={scale.item():.4g}) vs CLIPModel(return_loss=True).loss")


@pytest.mark.points(2)
def test_loss_matches_clip_model(expect, rng):
    _expect_clip(expect, rng, batch=5)  # logit_scale at CLIP's initial log(1 / 0.07)


@pytest.mark.points(2)
def test_loss_of_embeddings_not_normalised(expect, rng):
    _expect_clip(expect, rng, batch=4, rescale=True)


def test_loss_at_clips_largest_scale(expect, rng):
    # CLIP clamps logit_scale at log(100): logits up to 100, where exp() overflows float32.
    _expect_clip(expect, rng, batch=6, logit_scale=math.log(100.0), rescale=True)


def test_loss_is_symmetric(expect, rng):
    img, txt = rng.randn(5, 9), rng.randn(5, 9)
    scale = torch.tensor(math.log(1 / 0.07))
    expect(lambda m: m.clip_loss(img, txt, scale) - m.clip_loss(txt, img, scale), truth=torch.tensor(0.0),
           atol=1e-6,  # two float32 losses of O(1) summed in a different order
           name="clip_loss(images, texts) - clip_loss(texts, images) (the loss treats both sides alike)")


def test_aligned_pairs_give_near_zero_loss(expect, rng):
    # 6 orthonormal directions, each text a positive multiple of its image; exp(scale) = 100
    # puts every wrong pair 100 logits below the right one, so the loss is about 5 * exp(-100).
    q, _ = torch.linalg.qr(rng.randn(10, 6))
    img = q.T.contiguous()
    txt = img * (0.5 + rng.rand(6, 1))
    expect(lambda m: m.clip_loss(img, txt, math.log(100.0)), truth=torch.tensor(0.0), atol=1e-6,
           name="clip_loss(orthonormal image embeddings, texts = positive multiples of them,"
                " logit_scale=log(100) as a float): aligned, well-separated pairs")


def test_batch_of_one(expect, rng):
    img, txt = rng.randn(1, 7), rng.randn(1, 7)
    # a single pair is its own only candidate: both cross-entropies are exactly log(1) = 0
    expect(lambda m: m.clip_loss(img, txt, torch.tensor(2.0)), truth=torch.tensor(0.0), atol=1e-7,
           name="clip_loss of a batch of one pair")


@pytest.mark.hidden
def test_hidden_fresh_shapes(expect, rng):
    """Shapes the public checks do not show: a 15x15 image in 5x5 patches of 2 channels, a
    non-square patchify, and a CLIP batch of 7 with projection dim 5 and a small scale."""
    _expect_vit(expect, rng, image=15, patch=5, channels=2, hidden=10, batch=2)
    x = rng.randn(1, 4, 6, 10)
    expect(lambda m: m.patchify(x, 2), truth=F.unfold(x, 2, stride=2).transpose(1, 2),
           name="patchify(images of shape (1, 4, 6, 10), patch_size=2) vs F.unfold")
    _expect_clip(expect, rng, batch=7, projection_dim=5, logit_scale=0.3, rescale=True)
