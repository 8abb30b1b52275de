"""Checks for peft.lora_linear: parity with peft's own LoRA layer (`peft.tuners.lora.Linear`)
holding the same A and B, in outputs and gradients; the initialisation; dropout; freezing.

The student's layer is built in the solution's process (a module is not data, so it cannot
cross): a program there makes `nn.Linear(in, out, bias)`, loads the judge's weights into it,
wraps it in `LoRALinear(base, r, alpha, dropout)`, loads A and B with `load_state_dict`
(strict), and runs the forward (and backward) the check asks for. The truth is peft's layer
built here with `init_lora_weights=False` and the same A and B copied in. In training mode
with dropout both sides seed torch's global generator right before the forward, so both
draw the same dropout mask.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from peft import LoraConfig
from peft.tuners.lora import Linear as PeftLinear
from torch import nn

from grader import probes
from grader.checks import OncePerModule, one_torch_thread
from grader.compare import check

# float32, outputs of size ~1: x @ A.T @ B.T and x @ (B @ A).T differ by a few ulps
TOL = {"atol": 1e-5, "rtol": 1e-5}


def base_weights(rng: Any, d_in: int, d_out: int, bias: bool) -> dict[str, torch.Tensor]:
    sd = {"weight": rng.randn(d_out, d_in, scale=d_in ** -0.5)}
    if bias:
        sd["bias"] = rng.randn(d_out, scale=0.5)
    return sd


def adapter(rng: Any, d_in: int, d_out: int, r: int) -> dict[str, torch.Tensor]:
    """A and B both nonzero (a trained adapter), so the update is visible."""
    return {"lora_A": rng.randn(r, d_in, scale=d_in ** -0.5), "lora_B": rng.randn(d_out, r, scale=0.5)}


def peft_layer(base_sd: dict[str, torch.Tensor], ab: dict[str, torch.Tensor], r: int, alpha: float,
               dropout: float) -> PeftLinear:
    d_out, d_in = base_sd["weight"].shape
    base = nn.Linear(d_in, d_out, bias="bias" in base_sd)
    base.load_state_dict(base_sd)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights=False)
    layer = PeftLinear(base, "default", config, r=r, lora_alpha=alpha, lora_dropout=dropout,
                       init_lora_weights=False)
    layer.base_layer.requires_grad_(False)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ab["lora_A"])
        layer.lora_B["default"].weight.copy_(ab["lora_B"])
    return layer


def peft_run(base_sd: dict[str, torch.Tensor], ab: dict[str, torch.Tensor], r: int, alpha: float, dropout: float,
             x: torch.Tensor, *, train: bool = False, seed: int = 0, grad_out: torch.Tensor | None = None
             ) -> dict[str, Any]:
    layer = peft_layer(base_sd, ab, r, alpha, dropout)
    layer.train(train)
    xr = x.clone().requires_grad_(grad_out is not None)
    with torch.random.fork_rng(), one_torch_thread():
        torch.manual_seed(seed)
        out = layer(xr)
        if grad_out is None:
            return {"out": out.detach()}
        (out * grad_out).sum().backward()
    return {"out": out.detach(), "grad_A": layer.lora_A["default"].weight.grad,
            "grad_B": layer.lora_B["default"].weight.grad, "grad_x": xr.grad}


def student_run(module: Any, base_sd: dict[str, torch.Tensor], ab: dict[str, torch.Tensor] | None, r: int,
                alpha: float, dropout: float, x: torch.Tensor | None, *, train: bool = False, seed: int = 0,
                grad_out: torch.Tensor | None = None) -> dict[str, Any]:
    """One program in the solution's process: build, load (unless `ab` is None: the layer as
    initialised), forward (unless `x` is None) and, with `grad_out`, backward of sum(out * grad_out).
    Returns the state dict, the requires_grad flags, the output and the gradients."""
    d_out, d_in = base_sd["weight"].shape
    prog: list[Any] = [
        ["import", "torch"],                                                          # 0
        ["getattr", 0, "nn"],                                                         # 1
        ["method", 1, "Linear", [["val", d_in], ["val", d_out], ["val", "bias" in base_sd]]],  # 2
        ["method", 2, "load_state_dict", [["val", base_sd]]],                         # 3
        ["call", "LoRALinear", [["reg", 2], ["val", r], ["val", alpha], ["val", dropout]]],  # 4
    ]
    layer = 4
    outputs: dict[str, Any] = {}

    def add(ins: list[Any]) -> int:
        prog.append(ins)
        return len(prog) - 1

    if ab is not None:
        sd = {f"base.{k}": v for k, v in base_sd.items()} | ab
        add(["method", layer, "load_state_dict", [["val", sd]]])
    outputs["state"] = add(["method", layer, "state_dict", []])
    flags = {}
    for name in ("lora_A", "lora_B"):
        flags[name] = add(["getattr", add(["getattr", layer, name]), "requires_grad"])
    base = add(["getattr", layer, "base"])
    for name in base_sd:
        flags[f"base.{name}"] = add(["getattr", add(["getattr", base, name]), "requires_grad"])
    outputs["same_base"] = add(["method", add(["import", "operator"]), "is_", [["reg", base], ["reg", 2]]])
    add(["method", layer, "train", [["val", train]]])
    if x is not None:
        xr = add(["const", x.clone()])
        if grad_out is not None:
            add(["method", xr, "requires_grad_", [["val", True]]])
        add(["method", 0, "manual_seed", [["val", seed]]])
        out = add(["method", layer, "__call__", [["reg", xr]]])
        outputs["out"] = add(["method", out, "detach", []])
        if grad_out is not None:
            add(["method", add(["method", add(["method", out, "mul", [["val", grad_out]]]), "sum", []]),
                 "backward", []])
            outputs["grad_A"] = add(["getattr", add(["getattr", layer, "lora_A"]), "grad"])
            outputs["grad_B"] = add(["getattr", add(["getattr", layer, "lora_B"]), "grad"])
            outputs["grad_x"] = add(["getattr", xr, "grad"])
            for name in base_sd:
                outputs[f"grad_base.{name}"] = add(["getattr", add(["getattr", base, name]), "grad"])
    keys = list(outputs) + [f"requires_grad.{k}" for k in flags]
    values = probes.run_program(module, prog, list(outputs.values()) + list(flags.values()))
    got = dict(zip(keys, values))
    got["state"] = dict(got["state"])
    return got


def runs_keys(grads: bool, base_sd: dict[str, torch.Tensor]) -> list[str]:
    keys = ["out"]
    if grads:
        keys += ["grad_A", "grad_B", "grad_x"] + [f"grad_base.{n}" for n in base_sd]
    return keys


def label(d_in: int, d_out: int, bias: bool, r: int, alpha: float, dropout: float) -> str:
    return f"LoRALinear(nn.Linear({d_in}, {d_out}, bias={bias}), r={r}, alpha={alpha}, dropout={dropout})"


def expect_parity(expect: Any, rng: Any, d_in: int, d_out: int, bias: bool, r: int, alpha: float,
                  x_shape: tuple[int, ...], *, dropout: float = 0.0, train: bool = False,
                  grads: bool = False) -> None:
    base_sd = base_weights(rng, d_in, d_out, bias)
    ab = adapter(rng, d_in, d_out, r)
    x = rng.randn(*x_shape)
    g = rng.randn(*x_shape[:-1], d_out) if grads else None
    seed = int(rng.np.integers(1 << 30))
    what = (f"{label(d_in, d_out, bias, r, alpha, dropout)} with A, B loaded, in "
            f"{'training' if train else 'eval'} mode, x {tuple(x_shape)}")

    # one program per module (the student's, each known mistake's) for all the comparisons
    runs = OncePerModule(lambda m: student_run(m, base_sd, ab, r, alpha, dropout, x, train=train, seed=seed,
                                               grad_out=g))

    def run(m: Any, key: str) -> Any:
        return runs(m)[key]

    got = {key: run(expect.solution, key) for key in runs_keys(grads, base_sd)}
    truth = peft_run(base_sd, ab, r, alpha, dropout, x, train=train, seed=seed, grad_out=g)
    seeded = " (torch.manual_seed right before the forward on both sides: the same dropout mask)" if train else ""
    expect.compare(got["out"], truth["out"], lambda m: run(m, "out"), **TOL,
                   name=f"{what}: output vs peft.tuners.lora.Linear with the same A and B{seeded}")
    if grads:
        for key, of in (("grad_A", "lora_A"), ("grad_B", "lora_B"), ("grad_x", "x")):
            expect.compare(got[key], truth[key], lambda m, k=key: run(m, k), **TOL,
                           name=f"{what}: the gradient of sum(output * g) with respect to {of} vs peft's")
        for name in base_sd:
            expect.compare(got[f"grad_base.{name}"], None, lambda m, n=name: run(m, f"grad_base.{n}"),
                           name=f"{what}: base.{name}.grad after backward (None: the base is frozen)")


@pytest.mark.points(2)
def test_forward_matches_peft(expect, rng):
    expect_parity(expect, rng, 12, 10, True, 4, 8.0, (3, 5, 12))  # scaling 2
    expect_parity(expect, rng, 7, 13, False, 3, 5.0, (4, 7))  # odd sizes, scaling 5/3


@pytest.mark.points(2)
def test_gradients_match_peft(expect, rng):
    expect_parity(expect, rng, 9, 6, True, 2, 16.0, (2, 4, 9), grads=True)
    expect_parity(expect, rng, 5, 11, False, 5, 3.0, (6, 5), grads=True)


@pytest.mark.points(2)
def test_initialisation(expect, rng):
    """B = 0 (so the output is exactly base(x)), A uniform on [-1/sqrt(in), 1/sqrt(in)] with the
    spread of that uniform (kaiming_uniform_(a=sqrt(5))), only A and B trainable, the base is
    the given module, scaling in the output."""
    d_in, d_out, r = 48, 20, 16
    base_sd = base_weights(rng, d_in, d_out, True)
    x = rng.randn(3, d_in)
    what = f"{label(d_in, d_out, True, r, 32.0, 0.0)} as initialised"

    run_all = OncePerModule(lambda m: student_run(m, base_sd, None, r, 32.0, 0.0, x))

    def run(m: Any, key: str) -> Any:
        return run_all(m)[key]

    got = run_all(expect.solution)
    state = got["state"]
    expect.compare(sorted(state), ["base.bias", "base.weight", "lora_A", "lora_B"],
                   lambda m: sorted(run(m, "state")), name=f"{what}: the names in state_dict()")
    expect.compare(state["lora_B"], torch.zeros(d_out, r), lambda m: run(m, "state")["lora_B"],
                   name=f"{what}: lora_B (all zeros, shape ({d_out}, {r}))")
    expect.compare(state["base.weight"], base_sd["weight"], lambda m: run(m, "state")["base.weight"],
                   name=f"{what}: base.weight (the given nn.Linear's weight, unchanged)")
    with one_torch_thread():
        base_out = nn.functional.linear(x, base_sd["weight"], base_sd["bias"])
    expect.compare(got["out"], base_out, lambda m: run(m, "out"), **TOL,
                   name=f"{what}: output equals base(x) (B = 0, so the update is 0)")
    flags = {k: v for k, v in got.items() if k.startswith("requires_grad.")}
    truth = {"requires_grad.lora_A": True, "requires_grad.lora_B": True, "requires_grad.base.weight": False,
             "requires_grad.base.bias": False}
    expect.compare(flags, truth, lambda m: {k: v for k, v in run_all(m).items() if k.startswith("requires_grad.")},
                   name=f"{what}: requires_grad of each parameter (only the adapter trains)")
    expect.compare(got["same_base"], True, lambda m: run(m, "same_base"),
                   name=f"{what}: `layer.base is` the nn.Linear given (wrapped, not copied)")
    a = state["lora_A"]
    check(tuple(a.shape) == (r, d_in), f"{what}: lora_A must have shape ({r}, {d_in}), got {tuple(a.shape)}")
    bound = 1 / math.sqrt(d_in)
    expect.compare(init_stats(a, d_in), {"max |A| <= bound": True, "max |A| > 0.9 bound": True,
                                         "std within 10% of bound / sqrt(3)": True},
                   lambda m: init_stats(run(m, "state")["lora_A"], d_in),
                   name=f"{what}: lora_A drawn from kaiming_uniform_(a=sqrt(5)) = U(-bound, bound), bound = "
                        f"1/sqrt({d_in}) = {bound:.4f} (got max |A| {a.abs().max().item():.4f}, std "
                        f"{a.std().item():.4f})")


def init_stats(a: torch.Tensor, d_in: int) -> dict[str, bool]:
    """What r * in >= 768 draws of U(-b, b) show: all within b, the max near b, the std b / sqrt(3)
    within 10% (about 5 standard errors)."""
    bound = 1 / math.sqrt(d_in)
    return {"max |A| <= bound": bool(a.abs().max() <= bound * (1 + 1e-6)),
            "max |A| > 0.9 bound": bool(a.abs().max() > 0.9 * bound),
            "std within 10% of bound / sqrt(3)": abs(a.std().item() / (bound / math.sqrt(3)) - 1) < 0.1}


@pytest.mark.points(2)
def test_dropout_on_the_input_in_training_only(expect, rng):
    # training mode: peft's mask under the same seed; eval mode: no dropout at all
    expect_parity(expect, rng, 16, 8, True, 4, 4.0, (5, 16), dropout=0.5, train=True)
    expect_parity(expect, rng, 16, 8, True, 4, 4.0, (5, 16), dropout=0.5, train=False)
    expect_parity(expect, rng, 10, 6, False, 2, 2.0, (2, 3, 10), dropout=0.25, train=True, grads=True)


def test_edge_shapes(expect, rng):
    # rank 1, a single vector without a batch axis, one row; a rank larger than needed
    expect_parity(expect, rng, 6, 4, True, 1, 1.0, (6,))
    expect_parity(expect, rng, 3, 5, True, 8, 4.0, (1, 1, 3))


@pytest.mark.hidden
def test_hidden_fresh_sizes(expect, rng):
    """Sizes, ranks and alphas the public checks do not use (alpha < r, so scaling < 1), 4-d
    inputs, training-mode dropout of 0.1 with gradients, and eval mode after training."""
    d_in, d_out = int(rng.np.integers(17, 40)), int(rng.np.integers(3, 30))
    r = int(rng.np.integers(3, 9))
    expect_parity(expect, rng, d_in, d_out, True, r, 1.5, (2, 2, 3, d_in), grads=True)
    expect_parity(expect, rng, d_in, d_out, False, r, float(r * 3), (4, d_in), dropout=0.1, train=True, grads=True)
    expect_parity(expect, rng, d_out, d_in, True, 2, 7.0, (3, d_out), dropout=0.3, train=False, grads=True)
