"""Checks for architectures.encoder_decoder: parity with torch.nn.Transformer, same weights.

The judge builds torch.nn.Transformer(batch_first=True, dropout=0) here, overwrites every
parameter with values drawn from `rng` (so LayerNorm affines and biases are not the trivial
ones/zeros of a fresh module), and loads that state_dict (strict) into the student's
Seq2SeqTransformer built in the solution process. encode / decode / forward are compared with
transformer.encoder / transformer.decoder / transformer(...). The torch module is kept in
training mode: dropout is 0, so the math is the same, and its inference fast path (nested
tensors that zero padded positions) is never taken.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from grader.checks import one_torch_thread

# float32, outputs of LayerNorm size (|y| < ~5): the reference is within 2e-6 of
# nn.Transformer; every known mistake is off by more than 1e-1.
TOL = {"atol": 1e-5, "rtol": 1e-5}
# Masked keys get exactly zero weight, so hidden inputs must not move outputs at all; this only
# absorbs a different reduction order should a kernel change paths between two calls.
SAME = {"atol": 1e-6, "rtol": 0.0}

Config = tuple[int, int, int, int, int]  # d_model, nhead, encoder layers, decoder layers, ff


def _torch_transformer(cfg: Config, state: dict[str, torch.Tensor] | None = None) -> nn.Transformer:
    d_model, nhead, n_enc, n_dec, ff = cfg
    torch.manual_seed(0)  # the construction-time init is overwritten by `state`; seeded anyway
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "enable_nested_tensor is True, but ... odd heads"
        model = nn.Transformer(
            d_model=d_model, nhead=nhead, num_encoder_layers=n_enc, num_decoder_layers=n_dec,
            dim_feedforward=ff, dropout=0.0, activation="relu", batch_first=True, norm_first=False,
        )
    if state is not None:
        model.load_state_dict(state)
    return model.train()  # dropout is 0; training mode keeps torch off its fast path


def _weights(rng: Any, cfg: Config) -> dict[str, torch.Tensor]:
    """A random state_dict with nn.Transformer's keys and shapes."""
    out = {}
    for key, value in _torch_transformer(cfg).state_dict().items():
        if ".norm" in key or key.startswith(("encoder.norm", "decoder.norm")):
            out[key] = (1.0 + rng.randn(*value.shape, scale=0.2)) if key.endswith("weight") else \
                rng.randn(*value.shape, scale=0.2)
        elif value.dim() == 2:
            # 1.5/sqrt(fan_in) for q/k/v makes the softmax peaked enough that masking and
            # query/key mix-ups stand out.
            scale = (1.5 if "in_proj" in key else 1.0) / value.shape[1] ** 0.5
            out[key] = rng.randn(*value.shape, scale=scale)
        else:
            out[key] = rng.randn(*value.shape, scale=0.3)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: in the judge (the torch module, known mistakes, the direct-mode reference)
    extra threads only spin on a busy machine, at many times the cost of the work itself."""
    with one_torch_thread():
        yield


def _expected(model: nn.Transformer, method: str, kwargs: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mixed bool / float masks are intended
        if method == "forward":
            causal = kwargs.get("causal", True)
            t = kwargs["tgt"].shape[1]
            return model(
                kwargs["src"], kwargs["tgt"],
                tgt_mask=nn.Transformer.generate_square_subsequent_mask(t) if causal else None,
                src_key_padding_mask=kwargs.get("src_key_padding_mask"),
                memory_key_padding_mask=kwargs.get("src_key_padding_mask"),
                tgt_key_padding_mask=kwargs.get("tgt_key_padding_mask"),
            )
        if method == "encode":
            return model.encoder(kwargs["src"], src_key_padding_mask=kwargs.get("src_key_padding_mask"))
        return model.decoder(
            kwargs["tgt"], kwargs["memory"], tgt_mask=kwargs.get("tgt_mask"),
            memory_key_padding_mask=kwargs.get("memory_key_padding_mask"),
            tgt_key_padding_mask=kwargs.get("tgt_key_padding_mask"),
        )


def _build(ns: Any, cfg: Config, state: dict[str, torch.Tensor]) -> Any:
    """`ns.Seq2SeqTransformer(*cfg)` (the student's, or a mistake's) holding `state` (strict)."""
    model = ns.Seq2SeqTransformer(*cfg)
    model.load_state_dict(state)
    return model


def _call(model: Any, method: str, kwargs: dict[str, Any]) -> Any:
    return model(**kwargs) if method == "forward" else getattr(model, method)(**kwargs)


def _setup(expect: Any, rng: Any, cfg: Config) -> Callable[..., None]:
    """Random weights, the student's model holding them (one instance for every call of the
    check) and nn.Transformer holding them; returns `compare(method, what, **kwargs)`, which
    checks one call of the student's model against the torch module's."""
    state = _weights(rng, cfg)
    model, ref = _build(expect.solution, cfg, state), _torch_transformer(cfg, state)

    def compare(method: str, what: str, **kwargs: Any) -> None:
        expect.compare(_call(model, method, kwargs), _expected(ref, method, kwargs),
                       lambda m: _call(_build(m, cfg, state), method, kwargs), **TOL,
                       name=f"Seq2SeqTransformer{cfg}.{method} on {what}")

    return compare


def _padding(lengths: list[int], total: int) -> torch.Tensor:
    """(B, total) bool, True at positions >= that row's length (True = padding, ignore)."""
    return torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]


def test_state_dict_matches_nn_transformer(expect):
    for cfg in ((36, 3, 1, 2, 20), (16, 4, 2, 1, 24)):
        expected = {k: tuple(v.shape) for k, v in _torch_transformer(cfg).state_dict().items()}
        expect(lambda m, cfg=cfg: {k: tuple(v.shape) for k, v in m.Seq2SeqTransformer(*cfg).state_dict().items()},
               truth=expected, name=f"state_dict() names -> shapes of Seq2SeqTransformer{cfg} "
                                    "(must equal torch.nn.Transformer's)")


@pytest.mark.points(2)
def test_encode_matches_torch(expect, rng):
    compare = _setup(expect, rng, (32, 4, 2, 1, 48))
    src = rng.randn(3, 6, 32)
    compare("encode", "src (B=3, S=6), no padding", src=src)
    pad = _padding([6, 4, 1], 6)
    pad[0, 1] = True  # a hole in the middle, not only right padding
    compare("encode", "src with src_key_padding_mask (True = padding)", src=src, src_key_padding_mask=pad)


@pytest.mark.points(2)
def test_decode_matches_torch(expect, rng):
    compare = _setup(expect, rng, (24, 2, 1, 2, 40))
    # S == T first, so a query/key mix-up in cross-attention runs (and is named) rather than crashing.
    tgt, memory = rng.randn(2, 5, 24), rng.randn(2, 5, 24)
    float_causal = nn.Transformer.generate_square_subsequent_mask(5)
    compare("decode", "tgt (T=5), memory (S=5), float causal tgt_mask", tgt=tgt, memory=memory, tgt_mask=float_causal)
    memory = rng.randn(2, 8, 24)
    bool_causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # True = may not attend
    compare("decode", "T=5, S=8, bool causal tgt_mask, memory and tgt key padding", tgt=tgt, memory=memory,
            tgt_mask=bool_causal, memory_key_padding_mask=_padding([8, 3], 8), tgt_key_padding_mask=_padding([5, 2], 5))
    compare("decode", "T=5, S=8, no masks", tgt=tgt, memory=memory)


@pytest.mark.points(3)
def test_forward_matches_torch(expect, rng):
    compare = _setup(expect, rng, (32, 4, 2, 2, 64))
    src, tgt = rng.randn(2, 7, 32), rng.randn(2, 5, 32)
    compare("forward", "src (B=2, S=7), tgt (T=5), causal", src=src, tgt=tgt)


@pytest.mark.points(2)
def test_non_power_of_two_single_layer(expect, rng):
    # d_model 36 with 3 heads of 12; one layer each; the target longer than the source.
    compare = _setup(expect, rng, (36, 3, 1, 1, 20))
    src, tgt = rng.randn(3, 4, 36), rng.randn(3, 6, 36)
    compare("forward", "src (B=3, S=4), tgt (T=6), causal", src=src, tgt=tgt)


def test_length_one(expect, rng):
    compare = _setup(expect, rng, (20, 4, 2, 2, 16))
    src = rng.randn(3, 5, 20)
    compare("forward", "a target of length 1 (T=1, S=5), source padding",
            src=src, tgt=rng.randn(3, 1, 20), src_key_padding_mask=_padding([5, 2, 1], 5))
    compare("forward", "a source of length 1 (S=1, T=4)", src=rng.randn(2, 1, 20), tgt=rng.randn(2, 4, 20))


@pytest.mark.points(2)
def test_padding_masks(expect, rng):
    compare = _setup(expect, rng, (24, 3, 2, 2, 32))
    src, tgt = rng.randn(4, 7, 24), rng.randn(4, 6, 24)
    src_pad = _padding([7, 5, 2, 1], 7)
    src_pad[0, 3] = True  # a hole in the middle
    compare("forward", "src_key_padding_mask (used in the encoder and as memory_key_padding_mask)",
            src=src, tgt=tgt, src_key_padding_mask=src_pad)
    compare("forward", "source and target padding, causal",
            src=src, tgt=tgt, src_key_padding_mask=src_pad, tgt_key_padding_mask=_padding([6, 6, 3, 1], 6))


def test_not_causal(expect, rng):
    compare = _setup(expect, rng, (16, 2, 1, 2, 24))
    src, tgt = rng.randn(2, 4, 16), rng.randn(2, 6, 16)
    compare("forward", "causal=False (no tgt_mask)", src=src, tgt=tgt, causal=False)
    compare("forward", "causal=False with target padding", src=src, tgt=tgt, causal=False,
            tgt_key_padding_mask=_padding([6, 4], 6))


@pytest.mark.points(2)
def test_hidden_inputs_do_not_change_outputs(expect, rng):
    cfg = (24, 4, 1, 2, 32)
    state = _weights(rng, cfg)
    src, tgt = rng.randn(3, 6, 24), rng.randn(3, 7, 24)
    src_pad = _padding([6, 4, 2], 6)

    # Padding: changing padded source positions must change nothing at all.
    model = _build(expect.solution, cfg, state)
    base = model(src=src, tgt=tgt, src_key_padding_mask=src_pad)
    src2 = torch.where(src_pad[:, :, None], rng.randn(3, 6, 24, scale=3.0), src)
    expect.compare(model(src=src2, tgt=tgt, src_key_padding_mask=src_pad), base,
                   lambda m: _build(m, cfg, state)(src=src2, tgt=tgt, src_key_padding_mask=src_pad), **SAME,
                   name=f"Seq2SeqTransformer{cfg}.forward after changing only the padded source positions "
                        "(src_key_padding_mask True = hidden from the encoder and the cross-attention)")

    # Causality: changing the target from position t on must not move the outputs before t.
    def over_target(m: Any) -> Any:
        model = _build(m, cfg, state)
        return lambda target: model(src=src, tgt=target, src_key_padding_mask=src_pad)

    for t in (1, 4, 6):
        expect.causal(over_target, tgt, t=t, rng=rng, **SAME,
                      name=f"Seq2SeqTransformer{cfg}.forward(src, tgt of shape (3, 7, 24), src_key_padding_mask)")


@pytest.mark.hidden
def test_hidden_fresh_sizes_and_padding(expect, rng):
    """Sizes the public checks do not use, drawn afresh: 3 to 5 heads of an odd head size (5 to
    11), so d_model is never a power of two, 1 to 3 layers on each side, a batch of 1 to 4,
    source and target lengths from 1 to 9; source padding drawn anywhere in each row (every
    row keeps a real token) and target padding at the end of each row."""
    nhead, head_dim = int(rng.randint(3, 6, ())), 2 * int(rng.randint(2, 6, ())) + 1
    d = nhead * head_dim
    cfg = (d, nhead, int(rng.randint(1, 4, ())), int(rng.randint(1, 4, ())), int(rng.randint(8, 4 * d, ())))
    compare = _setup(expect, rng, cfg)
    batch, s, t = int(rng.randint(1, 5, ())), int(rng.randint(1, 10, ())), int(rng.randint(1, 10, ()))
    src, tgt = rng.randn(batch, s, d), rng.randn(batch, t, d)
    src_pad = rng.rand(batch, s) < 0.4
    src_pad[torch.arange(batch), rng.randint(0, s, (batch,))] = False
    tgt_pad = _padding(rng.randint(1, t + 1, (batch,)).tolist(), t)
    shown = f"src (B={batch}, S={s}) with src_key_padding_mask={src_pad.long().tolist()}"
    compare("encode", shown, src=src, src_key_padding_mask=src_pad)
    compare("forward", f"{shown}, tgt (T={t}) with tgt_key_padding_mask={tgt_pad.long().tolist()}, causal",
            src=src, tgt=tgt, src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad)
