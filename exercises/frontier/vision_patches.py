"""Vision patches: ViT patch embedding and CLIP's contrastive (InfoNCE) loss.

An image is cut into non-overlapping P x P patches, each patch is flattened and projected to
the hidden size (a Conv2d with kernel = stride = P does both), a learned CLS token is put in
front and learned position embeddings are added: transformers' ViTEmbeddings. CLIP then trains
image and text encoders so that matching pairs have the highest cosine similarity: a
symmetric cross-entropy over the batch's similarity matrix.
"""

from __future__ import annotations

import torch
from torch import nn


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C * P * P), P = patch_size, H and W multiples of P.

    Patches in row-major order: patch n = r * (W // P) + c covers rows r*P .. r*P + P - 1 and
    columns c*P .. c*P + P - 1, so N = (H // P) * (W // P). A patch's features in the order of
    a Conv2d weight (out, C, P, P): feature k = ch * P * P + i * P + j is
    images[b, ch, r*P + i, c*P + j] (channel first, then row i, then column j in the patch).
    Thus patchify(x, P) @ conv.weight.reshape(D, -1).T + conv.bias equals
    conv(x).flatten(2).transpose(1, 2) for conv = Conv2d(C, D, kernel_size=P, stride=P).
    Same dtype as `images`.
    """
    raise NotImplementedError

class PatchEmbedding(nn.Module):
    """ViT's embeddings (transformers' ViTEmbeddings without the mask token; no dropout).

    Square images of side `image_size`, a multiple of `patch_size`; N = (image_size //
    patch_size) ** 2 patches. Parameters, with exactly these state_dict names and shapes (those
    of ViTEmbeddings, so weights copy either way):
      cls_token                           (1, 1, hidden_size)
      position_embeddings                 (1, N + 1, hidden_size); row 0 is the CLS slot
      patch_embeddings.projection.weight  (hidden_size, num_channels, P, P)  (a Conv2d's)
      patch_embeddings.projection.bias    (hidden_size,)
    (patch_embeddings: a submodule holding an nn.Conv2d(num_channels, hidden_size, kernel_size=P,
    stride=P) named projection). Their initial values are free: the judge loads its own.
    forward(pixel_values (B, num_channels, image_size, image_size)) -> (B, N + 1, hidden_size):
    row 0 is cls_token, rows 1..N the projected patches in patchify's row-major order;
    position_embeddings are added to all N + 1 rows (the CLS row included).
    """

    def __init__(self, image_size: int, patch_size: int, num_channels: int, hidden_size: int) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric contrastive (InfoNCE) loss, as CLIPModel(return_loss=True).

    image_embeds (B, D) and text_embeds (B, D): pair i is image i with text i. Both are first
    L2-normalised along D. `logit_scale` is the LOG of the inverse temperature (CLIP's
    learned parameter, a 0-dim tensor or float): logits_per_text = text @ image.T *
    exp(logit_scale), (B_text, B_image); logits_per_image is its transpose. Returns the
    0-dim mean of the two cross-entropies with targets arange(B), each averaged over the
    batch: (CE(logits_per_text, arange) + CE(logits_per_image, arange)) / 2.
    """
    raise NotImplementedError
