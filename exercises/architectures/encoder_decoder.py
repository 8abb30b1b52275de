"""An encoder-decoder (seq2seq) transformer: cross-attention and the full forward pass.

Implement `Seq2SeqTransformer` so that, holding the same weights, it computes exactly what

    torch.nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers,
                         dim_feedforward, dropout=0.0, activation="relu",
                         layer_norm_eps=1e-5, batch_first=True, norm_first=False)

computes. There are no embeddings and no output projection: inputs are already vectors of
width d_model and the output is the decoder's final hidden states. The checks build your
module, load torch.nn.Transformer's `state_dict()` into it with `load_state_dict` (strict), and
compare `encode`, `decode` and `forward` with that torch module.

You may not use torch.nn.Transformer, TransformerEncoder(Layer), TransformerDecoder(Layer),
torch.nn.MultiheadAttention, torch.nn.functional.multi_head_attention_forward or
torch.nn.functional.scaled_dot_product_attention: write the attention yourself. nn.Linear,
nn.LayerNorm, nn.ModuleList, F.linear, F.relu, softmax, matmul, reshape and the like are fine.

Parameters: `state_dict()` must have EXACTLY torch.nn.Transformer's keys and shapes, nothing
else (no buffers). E = d_model, F = dim_feedforward, Linear weights in PyTorch's
(out_features, in_features) layout (y = x @ W.T + b). For every encoder layer i:
    encoder.layers.{i}.self_attn.in_proj_weight     (3E, E)  rows [0,E) query, [E,2E) key,
    encoder.layers.{i}.self_attn.in_proj_bias       (3E,)    [2E,3E) value; same order
    encoder.layers.{i}.self_attn.out_proj.weight    (E, E)
    encoder.layers.{i}.self_attn.out_proj.bias      (E,)
    encoder.layers.{i}.linear1.weight (F, E), .linear1.bias (F,)
    encoder.layers.{i}.linear2.weight (E, F), .linear2.bias (E,)
    encoder.layers.{i}.norm1.weight/.bias (E,), encoder.layers.{i}.norm2.weight/.bias (E,)
then encoder.norm.weight, encoder.norm.bias (E,) (the encoder's FINAL LayerNorm). For every
decoder layer j: decoder.layers.{j}.self_attn.* and decoder.layers.{j}.multihead_attn.* (the
cross-attention; both with the four entries above), linear1, linear2, norm1, norm2, norm3;
then decoder.norm.weight, decoder.norm.bias (the decoder's final LayerNorm).
`in_proj_weight` and `in_proj_bias` are plain nn.Parameters of the attention module (not a
Linear); `out_proj` is an nn.Linear(E, E). One way to get these names: an attention module with
those three attributes; encoder/decoder layer modules with attributes self_attn
(multihead_attn), linear1, linear2, norm1, norm2 (norm3); and `self.encoder` / `self.decoder`
modules each holding `layers` (an nn.ModuleList) and `norm` (an nn.LayerNorm(E, eps=1e-5)).
How parameters are initialised is not checked.

Attention (used three times: encoder self-attention, decoder self-attention, decoder
cross-attention), with H = nhead and head size d = E // H (E need not be a power of two,
e.g. E=36, H=3):
1. q = query @ W_q.T + b_q, k = source @ W_k.T + b_k, v = source @ W_v.T + b_v, with
   W_q, W_k, W_v the three row blocks of in_proj_weight (and b_* of in_proj_bias). For
   self-attention query and source are the same tensor. For CROSS-attention the queries come
   from the decoder stream and the keys/values from the encoder output (`memory`).
2. Split the last axis into H heads of d consecutive features (feature h*d + j is feature j of
   head h); scores = q @ k^T / sqrt(d) per head, shape (B, H, L_query, L_source).
3. Masks (nn.Transformer's conventions): a bool attention mask is True where attending is NOT
   allowed (those scores become -inf); a float attention mask is ADDED to the scores (0 or
   -inf, as generate_square_subsequent_mask makes); a key padding mask (B, L_source) is True at
   keys to IGNORE (padding), for every query and head.
4. softmax over the source axis, weights @ v, heads merged back in the order of step 2, then
   out_proj.

Layers are POST-norm (norm_first=False), activation ReLU, LayerNorm eps 1e-5, no dropout:
    encoder layer:  x = norm1(x + self_attn(x, x, key padding = src padding))
                    x = norm2(x + linear2(relu(linear1(x))))
    decoder layer:  x = norm1(x + self_attn(x, x, attention mask = tgt_mask,
                                            key padding = tgt padding))
                    x = norm2(x + multihead_attn(x, memory, key padding = memory padding))
                    x = norm3(x + linear2(relu(linear1(x))))
    encoder: the layers in order, then encoder.norm; decoder: the layers in order (each gets
    the same `memory`), then decoder.norm.

All tensors are float32, batch first. B = batch, S = source length, T = target length
(S and T may differ; either may be 1). Padded positions are not special in the outputs: they
are computed like any other position. The checks never build a query row whose keys are all
masked.
"""

from __future__ import annotations

import math  # noqa: F401

import torch
import torch.nn.functional as F  # noqa: F401
from torch import nn


class Seq2SeqTransformer(nn.Module):
    """torch.nn.Transformer's computation (batch_first, post-norm, ReLU, no dropout)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_encoder_layers: int,
        num_decoder_layers: int,
        dim_feedforward: int,
    ) -> None:
        """Create the parameters named in the module docstring.

        d_model: E, the model width; nhead: H (E is divisible by H);
        num_encoder_layers, num_decoder_layers: >= 1 each; dim_feedforward: F, the hidden
        width of each layer's ReLU MLP.
        """
        super().__init__()
        raise NotImplementedError

    def encode(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder: what nn.Transformer.encoder(src, src_key_padding_mask=...) returns.

        src: (B, S, E) float32. src_key_padding_mask: None or (B, S) bool, True = padding key,
        ignored by every query of the encoder's self-attention.
        Returns memory, (B, S, E), AFTER the final encoder.norm.
        """
        raise NotImplementedError

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The decoder: what nn.Transformer.decoder(tgt, memory, tgt_mask=..., ...) returns.

        tgt: (B, T, E) float32; memory: (B, S, E), the encoder's output.
        tgt_mask: None or (T, T), the attention mask of the decoder's SELF-attention only:
            bool (True = query t may NOT attend to key u) or float (added to the scores, e.g.
            nn.Transformer.generate_square_subsequent_mask(T): 0 on and below the diagonal,
            -inf above). None means no mask (every target position sees every other).
        memory_key_padding_mask: None or (B, S) bool, True = padded memory position, ignored
            by the cross-attention (multihead_attn) of every decoder layer.
        tgt_key_padding_mask: None or (B, T) bool, True = padded target position, ignored as
            a KEY by the decoder's self-attention.
        Returns (B, T, E), AFTER the final decoder.norm.
        """
        raise NotImplementedError

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        causal: bool = True,
    ) -> torch.Tensor:
        """encode then decode: what nn.Transformer returns for

            transformer(src, tgt,
                        tgt_mask=generate_square_subsequent_mask(T) if causal else None,
                        src_key_padding_mask=src_key_padding_mask,
                        memory_key_padding_mask=src_key_padding_mask,
                        tgt_key_padding_mask=tgt_key_padding_mask)

        i.e. the source padding hides padded source positions both inside the encoder and
        from the decoder's cross-attention. With causal=True, target position t attends only
        to target positions <= t (itself included), so the output at t does not depend on
        tgt[:, t+1:]; with causal=False the decoder's self-attention is unmasked (apart from
        padding). Returns (B, T, E).
        """
        raise NotImplementedError
