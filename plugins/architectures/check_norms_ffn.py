"""Checks for architectures.norms_ffn: RMSNorm, tanh-GELU, GELU MLP and SwiGLU.

The student's modules are built in their own process, get the judge's random weights through
`load_state_dict`, and their outputs are compared with transformers' LlamaRMSNorm and LlamaMLP
on the same weights, and with torch's / transformers' tanh GELU.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.activations import NewGELUActivation
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from grader.checks import hf_output
from grader.compare import assert_close

# float32 throughout: only summation order and 1-ulp differences (x / sqrt vs x * rsqrt).
TOL = {"atol": 1e-6, "rtol": 1e-5}
# float16 / bfloat16 outputs: a float32 result one float32 ulp away (x / sqrt vs x * rsqrt)
# may round to the neighbouring half-precision value, and the product with weight is rounded
# again: allow up to 2**-6 relative (two bfloat16 ulps).
HALF_TOL = {"atol": 1e-5, "rtol": 2**-6}


# --- RMSNorm -----------------------------------------------------------------------------


def _rmsnorm(
    ns: Any, dim: int, weight: torch.Tensor, x: torch.Tensor, eps: float | None = None,
    dtype: torch.dtype | None = None,
) -> Any:
    """Build ns.RMSNorm (the student's or a known mistake's), load `weight`, convert, call."""
    m = ns.RMSNorm(dim) if eps is None else ns.RMSNorm(dim, eps=eps)
    m.load_state_dict({"weight": weight})
    if dtype is not None:
        m.to(dtype)
    return m(x)


def _rmsnorm_parity(
    expect: Any, dim: int, weight: torch.Tensor, x: torch.Tensor, what: str, eps: float | None = None,
    dtype: torch.dtype | None = None, tol: dict[str, float] = TOL, diagnose: bool = True,
) -> None:
    """The student's RMSNorm vs transformers' LlamaRMSNorm holding the same weight (loaded
    into a module already converted to `dtype`: the same rounding as converting after)."""
    llama = LlamaRMSNorm(dim) if eps is None else LlamaRMSNorm(dim, eps=eps)
    if dtype is not None:
        llama.to(dtype)
    ctor = f"RMSNorm({dim})" if eps is None else f"RMSNorm({dim}, eps={eps:g})"
    conv = "" if dtype is None else f".to({dtype})"
    name = f"{ctor}{conv}(x of shape {tuple(x.shape)}, {x.dtype}{what})"
    if diagnose:
        expect.hf_parity(lambda m: _rmsnorm(m, dim, weight, x, eps, dtype), llama, {"weight": weight}, x, **tol,
                         name=name)
    else:
        assert_close(_rmsnorm(expect.solution, dim, weight, x, eps, dtype), hf_output(llama, {"weight": weight}, x),
                     **tol, name=f"{name} vs transformers' LlamaRMSNorm with the same weight")


def _weight(rng: Any, dim: int) -> torch.Tensor:
    return 1.0 + 0.5 * rng.randn(dim)


# --- MLPs --------------------------------------------------------------------------------


def _llama_config(dim: int, hidden: int) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=dim,
        intermediate_size=hidden,
        hidden_act="silu",
        mlp_bias=False,
        # the attention sizes are unused by LlamaMLP: chosen so that any hidden size is valid
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=2,
        num_hidden_layers=1,
        vocab_size=16,
        attn_implementation="eager",
    )


def _swiglu_weights(rng: Any, dim: int, hidden: int) -> dict[str, torch.Tensor]:
    # scaled so the gate's pre-activations are O(1): silu is far from linear there
    return {
        "gate_proj.weight": rng.randn(hidden, dim, scale=1.5 * dim**-0.5),
        "up_proj.weight": rng.randn(hidden, dim, scale=dim**-0.5),
        "down_proj.weight": rng.randn(dim, hidden, scale=hidden**-0.5),
    }


def _gelu_mlp_weights(rng: Any, dim: int, hidden: int) -> dict[str, torch.Tensor]:
    return {
        "fc_in.weight": rng.randn(hidden, dim, scale=2.0 * dim**-0.5),
        "fc_in.bias": rng.randn(hidden, scale=0.5),
        "fc_out.weight": rng.randn(dim, hidden, scale=hidden**-0.5),
        "fc_out.bias": rng.randn(dim, scale=0.5),
    }


def _run_module(
    ns: Any, cls: str, dim: int, hidden: int, weights: dict[str, torch.Tensor], x: torch.Tensor
) -> Any:
    m = getattr(ns, cls)(dim, hidden)
    m.load_state_dict(weights)
    return m(x)


def _gelu_mlp_check(expect: Any, dim: int, hidden: int, w: dict[str, torch.Tensor], x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = F.linear(NewGELUActivation()(F.linear(x, w["fc_in.weight"], w["fc_in.bias"])), w["fc_out.weight"],
                            w["fc_out.bias"])
    expect(lambda m: _run_module(m, "GeluMLP", dim, hidden, w, x), truth=expected, atol=1e-5, rtol=1e-5,
           name=f"GeluMLP({dim}, {hidden})(x of shape {tuple(x.shape)}) vs fc_out(gelu_new(fc_in(x))) with the same"
           " weights")


def _swiglu_parity(expect: Any, dim: int, hidden: int, w: dict[str, torch.Tensor], x: torch.Tensor) -> None:
    expect.hf_parity(lambda m: _run_module(m, "SwiGLU", dim, hidden, w, x), LlamaMLP(_llama_config(dim, hidden)), w, x,
                     atol=1e-5, rtol=1e-5,
                     name=f"SwiGLU({dim}, {hidden})(x of shape {tuple(x.shape)}) (hidden_act='silu')")


def _shapes(state_dict: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


# --- checks ------------------------------------------------------------------------------


def test_parameter_names_and_shapes(expect):
    expect(lambda m: _shapes(m.RMSNorm(48).state_dict()), truth={"weight": (48,)},
           name="RMSNorm(48).state_dict(): names and shapes")
    expect(lambda m: m.RMSNorm(48).state_dict()["weight"], truth=torch.ones(48),
           name="RMSNorm(48).weight right after construction")
    expect(lambda m: _shapes(m.GeluMLP(24, 72).state_dict()),
           truth={"fc_in.weight": (72, 24), "fc_in.bias": (72,), "fc_out.weight": (24, 72), "fc_out.bias": (24,)},
           name="GeluMLP(24, 72).state_dict(): names and shapes")
    expect(lambda m: _shapes(m.SwiGLU(40, 88).state_dict()), truth=_shapes(LlamaMLP(_llama_config(40, 88)).state_dict()),
           name="SwiGLU(40, 88).state_dict(): names and shapes (must be LlamaMLP's)")


@pytest.mark.points(2)
def test_rmsnorm_matches_llama(expect, rng):
    # rows of very different scales and non-zero means: each row has its own RMS, and no
    # mean may be subtracted
    dim = 48
    x = rng.randn(6, dim) * torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0, 20.0])[:, None] + 0.7
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, "")
    dim = 40
    x3 = rng.randn(2, 5, dim, scale=3.0) + rng.randn(2, 5, 1)
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x3, "")


@pytest.mark.points(2)
def test_rmsnorm_eps(expect, rng):
    # rows whose RMS (~1e-4 .. 1e-3) is at or below sqrt(eps): there eps decides the output
    dim = 40
    x = rng.randn(4, dim) * torch.tensor([1e-4, 3e-4, 1e-3, 1.0])[:, None]
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, ", rows of RMS 1e-4 to 1")
    # a large, explicit eps: the constructor's eps must be the one used
    x = rng.randn(3, 2, dim, scale=0.3)
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, "", eps=0.1)


def test_rmsnorm_zeros_and_dim_one(expect, rng):
    dim = 24
    x = rng.randn(2, 3, dim)
    x[0, 1] = 0.0
    x[1] = 0.0
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, ", some rows all zeros")
    # dim 1: x / sqrt(x^2 + eps), about sign(x) away from 0
    x1 = rng.randn(5, 1) * torch.tensor([1e-4, 1e-3, 0.1, 1.0, 10.0])[:, None]
    _rmsnorm_parity(expect, 1, _weight(rng, 1), x1, "")


@pytest.mark.points(2)
def test_rmsnorm_half_precision(expect, rng):
    dim = 48
    # float16 values whose squares overflow float16 (|x| > 256): only a float32 sum survives
    x = rng.randn(3, dim, dtype=torch.float16, scale=400.0)
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, ", |x| in the hundreds", dtype=torch.float16, tol=HALF_TOL)
    # a float32 weight meeting a bfloat16 input: cast back, then multiply -> float32 out
    x = rng.randn(5, dim, dtype=torch.bfloat16, scale=2.0)
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, " with the module's weight left in float32", tol=HALF_TOL)
    # the whole module in bfloat16: bfloat16 in, bfloat16 out. Not diagnosed: here other
    # slips land within a bfloat16 ulp or two of the known mistakes' outputs.
    x = rng.randn(4, 3, dim, dtype=torch.bfloat16, scale=3.0)
    _rmsnorm_parity(expect, dim, _weight(rng, dim), x, "", dtype=torch.bfloat16, tol=HALF_TOL, diagnose=False)


@pytest.mark.points(2)
def test_gelu_tanh_matches_torch_and_transformers(expect, rng):
    special = torch.tensor(
        [0.0, 1e-3, -1e-3, 0.5, -0.5, 3.0, -3.0, 8.0, -8.0, 30.0, -30.0, 1e4, -1e4]
    )
    x = torch.cat([rng.randn(257, scale=3.0), special])
    got = expect(lambda m: m.gelu_tanh(x), truth=F.gelu(x, approximate="tanh"), **TOL,
                 name="gelu_tanh(x float32) vs F.gelu(x, approximate='tanh')")
    expect.compare(got, NewGELUActivation()(x), lambda m: m.gelu_tanh(x), **TOL,
                   name="gelu_tanh(x float32) vs transformers' gelu_new")
    x64 = rng.randn(7, 9, dtype=torch.float64, scale=3.0)
    expect(lambda m: m.gelu_tanh(x64), truth=F.gelu(x64, approximate="tanh"), atol=1e-12, rtol=1e-10,
           name="gelu_tanh(x float64 of shape (7, 9)) vs F.gelu(x, approximate='tanh')")


@pytest.mark.points(2)
def test_gelu_mlp(expect, rng):
    for dim, hidden, shape in ((24, 72, (2, 5)), (20, 52, (7,))):
        _gelu_mlp_check(expect, dim, hidden, _gelu_mlp_weights(rng, dim, hidden), rng.randn(*shape, dim))


@pytest.mark.points(2)
def test_swiglu_matches_llama_mlp(expect, rng):
    for dim, hidden, shape in ((40, 88, (2, 7)), (24, 64, (5,)), (40, 88, (1, 1))):
        _swiglu_parity(expect, dim, hidden, _swiglu_weights(rng, dim, hidden), rng.randn(*shape, dim))


@pytest.mark.hidden
def test_hidden_fresh_shapes_and_layouts(expect, rng):
    """Sizes and layouts the public checks do not use, drawn afresh: RMSNorm over an odd dim
    (3 to 101) on a 4-D input whose rows have non-zero means and RMS anywhere from 1e-3 to 1e2,
    and on a non-contiguous view (the normalised axis strided); the GELU MLP and SwiGLU with
    odd widths on 4-D inputs."""
    dim = 2 * int(rng.randint(1, 51, ())) + 1
    x = rng.randn(2, 3, 4, dim) * 10 ** (5 * rng.rand(2, 3, 4, 1) - 3) + rng.randn(2, 3, 4, 1, scale=1e-3)
    weight = _weight(rng, dim)
    _rmsnorm_parity(expect, dim, weight, x, ", rows of RMS 1e-3 to 1e2")
    xt = rng.randn(dim, 5, 2).permute(2, 1, 0)
    _rmsnorm_parity(expect, dim, weight, xt, ", a non-contiguous view")
    dim, hidden = 2 * int(rng.randint(4, 20, ())) + 1, 2 * int(rng.randint(8, 60, ())) + 1
    _gelu_mlp_check(expect, dim, hidden, _gelu_mlp_weights(rng, dim, hidden), rng.randn(2, 1, 3, dim))
    _swiglu_parity(expect, dim, hidden, _swiglu_weights(rng, dim, hidden), rng.randn(3, 2, 1, dim))
