"""Checks for peft.merge: delta_weight, merge, unmerge and merge_and_unload against peft's own
(`get_delta_weight`, the LoRA layers' `merge()` / `unmerge()`, `merge_and_unload()`), on lone
layers and on tiny Hugging Face models built from configs with random weights: Llama (nn.Linear
layers) and GPT-2 (Conv1D layers, weight stored (in, out): peft's fan_in_fan_out).

The student's model is built in the solution's process (a model is not data, so it cannot
cross): a program there builds it from the config, wraps each target layer in the stub's
`LoRALayer`, loads the judge's weights with the same random A and B as peft's model (strict
`load_state_dict`), runs a sequence of merge / unmerge calls on every wrapped layer, and reads
back every base weight and the logits after each call, then the state dict and logits of
`merge_and_unload(model)`. peft's model, given the same weights, runs the same sequence here.
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from grader import probes
from grader.checks import OncePerModule, TinyLM, one_torch_thread

# float32: (B @ A) * s and peft's own product differ by an ulp or two; weights of size ~0.5
W_TOL = {"atol": 2e-6, "rtol": 1e-5}
TOL = {"atol": 1e-4, "rtol": 1e-4}  # logits of size ~1 after two layers: an ulp per layer grows to ~3e-5



def llama(hidden: int = 24, seed: int = 0) -> TinyLM:
    kwargs = {"vocab_size": 61, "hidden_size": hidden, "intermediate_size": 2 * hidden - 6, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32,
              "initializer_range": 0.2, "attn_implementation": "eager", "bos_token_id": None,
              "eos_token_id": None, "pad_token_id": None}
    return TinyLM.of("llama", seed, **kwargs)


def gpt2(hidden: int = 16, heads: int = 2, seed: int = 0) -> TinyLM:
    kwargs = {"vocab_size": 53, "n_embd": hidden, "n_layer": 2, "n_head": heads, "n_positions": 32,
              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.2,
              "attn_implementation": "eager", "bos_token_id": None, "eos_token_id": None}
    return TinyLM.of("gpt2", seed, **kwargs)



def stub_name(name: str) -> str:
    """peft's parameter name as the stub's LoRALayer names it."""
    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".base.")
    return name.replace(".lora_A.default.weight", ".lora_A").replace(".lora_B.default.weight", ".lora_B")


def peft_model(spec: TinyLM, targets: tuple[str, ...], r: int, alpha: float, seed: int) -> Any:
    """get_peft_model on a copy of the judge's model with A and B drawn under `seed` (B nonzero)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fan_in_fan_out is set to False but the target module is Conv1D"
        model = get_peft_model(copy.deepcopy(spec.build()),
                               LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                                          init_lora_weights=False, fan_in_fan_out=spec.kind == "gpt2"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if ".lora_B." in name else p.shape[1] ** -0.5))
    return model.eval()


def lora_layers(model: Any) -> list[str]:
    """The names (in the plain model) of peft's LoRA layers."""
    return [n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A")
            and hasattr(m, "base_layer")]


@functools.lru_cache(maxsize=16)
def peft_sequence(spec: TinyLM, targets: tuple[str, ...], r: int, alpha: float, seed: int,
                  ops: tuple[str, ...]) -> dict[str, Any]:
    """peft's model running `ops` on every LoRA layer: the layer names, the state dict in the stub's
    names, and after each op (and before any) every base weight and the logits; then
    merge_and_unload's state dict and logits."""
    model = peft_model(spec, targets, r, alpha, seed)
    names = lora_layers(model)
    state = {stub_name(n): t.clone() for n, t in model.state_dict().items()}
    ids = torch.randint(0, spec.kwargs["vocab_size"], (2, 6), generator=torch.Generator().manual_seed(seed + 1))

    def read() -> dict[str, Any]:
        with torch.no_grad(), one_torch_thread():
            logits = model(input_ids=ids).logits
        weights = {n: model.get_submodule("base_model.model." + n).base_layer.weight.detach().clone() for n in names}
        return {"weights": weights, "logits": logits}

    steps = [read()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Already merged" / "Already unmerged. Nothing to do."
        for op in ops:
            for n in names:
                getattr(model.get_submodule("base_model.model." + n), op)()
            steps.append(read())
        plain = model.merge_and_unload()
    with torch.no_grad(), one_torch_thread():
        logits = plain(input_ids=ids).logits
    return {"names": names, "state": state, "ids": ids, "steps": steps,
            "unloaded": {"state": {k: v.clone() for k, v in plain.state_dict().items()}, "logits": logits}}


def student_sequence(module: Any, spec: TinyLM, truth: dict[str, Any], r: int, alpha: float,
                     ops: tuple[str, ...]) -> dict[str, Any]:
    """The same in the solution's process, through the stub's LoRALayer, merge, unmerge and
    merge_and_unload."""
    prog: list[Any] = spec.program() + [  # register 4: the model
        ["import", "operator"],                                                # 7
    ]

    def add(ins: list[Any]) -> int:
        prog.append(ins)
        return len(prog) - 1

    layers = []
    for name in truth["names"]:
        parent_name, _, child = name.rpartition(".")
        parent = add(["method", 4, "get_submodule", [["val", parent_name]]])
        base = add(["method", 4, "get_submodule", [["val", name]]])
        layer = add(["call", "LoRALayer", [["reg", base], ["val", r], ["val", alpha], ["val", spec.kind == "gpt2"]]])
        add(["method", parent, "__setattr__", [["val", child], ["reg", layer]]])
        layers.append(layer)
    add(["method", 4, "load_state_dict", [["val", truth["state"]]]])
    ids = add(["const", truth["ids"]])
    outputs: list[int] = []

    def read() -> None:
        for layer in layers:
            weight = add(["getattr", add(["getattr", layer, "base"]), "weight"])
            outputs.append(add(["method", add(["method", weight, "detach", []]), "clone", []]))
            outputs.append(add(["getattr", layer, "merged"]))
        logits = add(["getattr", add(["method", 4, "__call__", [["reg", ids]]]), "logits"])
        outputs.append(add(["method", logits, "detach", []]))

    read()
    for op in ops:
        for layer in layers:
            add(["call", op, [["reg", layer]]])
        read()
    plain = add(["call", "merge_and_unload", [["reg", 4]]])
    outputs.append(add(["method", 7, "is_", [["reg", plain], ["reg", 4]]]))
    outputs.append(add(["method", plain, "state_dict", []]))
    logits = add(["getattr", add(["method", plain, "__call__", [["reg", ids]]]), "logits"])
    outputs.append(add(["method", logits, "detach", []]))
    values = list(probes.run_program(module, prog, outputs))
    steps = []
    for _ in range(len(ops) + 1):
        weights, merged = {}, {}
        for name in truth["names"]:
            weights[name], merged[name] = values.pop(0), values.pop(0)
        steps.append({"weights": weights, "merged": merged, "logits": values.pop(0)})
    same, state, logits = values
    return {"steps": steps, "unloaded": {"same": same, "state": dict(state), "logits": logits}}


def expect_close_dict(expect: Any, got: dict[str, Any], truth: dict[str, Any], call: Any, *, name: str,
                      **tol: float) -> None:
    """The same keys exactly, then the values in the truth's key order within `tol`."""
    keys = list(truth)
    expect.compare(sorted(got), sorted(keys), lambda m: sorted(call(m)), name=f"{name}: the names")
    expect.compare([got[k] for k in keys], [truth[k] for k in keys], lambda m: [call(m)[k] for k in keys], **tol,
                   name=f"{name} (in the order {keys})")


def expect_sequence(expect: Any, rng: Any, spec: TinyLM, targets: tuple[str, ...], r: int, alpha: float,
                    ops: tuple[str, ...]) -> None:
    seed = int(rng.np.integers(1 << 30))
    truth = peft_sequence(spec, targets, r, alpha, seed, ops)
    kind = "Conv1D, fan_in_fan_out" if spec.kind == "gpt2" else "nn.Linear"
    what = f"{spec} with LoRALayer(r={r}, alpha={alpha}) on {list(targets)} ({kind})"

    # one program per module (the student's, each known mistake's) for all the comparisons
    run = OncePerModule(lambda m: student_sequence(m, spec, truth, r, alpha, ops))

    with one_torch_thread(expect.solution):
        got = run(expect.solution)
        merged = False
        for i, (step, want) in enumerate(zip(got["steps"], truth["steps"])):
            done = "before any merge" if i == 0 else "after " + ", ".join(ops[:i]) + " on every layer"
            if i:
                merged = ops[i - 1] == "merge"
            expect_close_dict(expect, step["weights"], want["weights"], lambda m, i=i: run(m)["steps"][i]["weights"],
                              **W_TOL, name=f"{what}, {done}: every layer's base.weight vs peft's base_layer.weight")
            expect.compare(step["merged"], dict.fromkeys(truth["names"], merged),
                           lambda m, i=i: run(m)["steps"][i]["merged"], name=f"{what}, {done}: layer.merged")
            expect.compare(step["logits"], want["logits"], lambda m, i=i: run(m)["steps"][i]["logits"], **TOL,
                           name=f"{what}, {done}: logits vs the peft model's")
        unloaded = got["unloaded"]
        expect.compare(unloaded["same"], True, lambda m: run(m)["unloaded"]["same"],
                       name=f"{what}: merge_and_unload(model) returns the model it was given")
        expect_close_dict(expect, unloaded["state"], truth["unloaded"]["state"], lambda m: run(m)["unloaded"]["state"],
                          **W_TOL, name=f"{what}, then merge_and_unload(model): its state dict (the plain model's names) "
                                     "vs peft's merge_and_unload()")
        expect.compare(unloaded["logits"], truth["unloaded"]["logits"], lambda m: run(m)["unloaded"]["logits"],
                       **TOL, name=f"{what}, then merge_and_unload(model): logits vs peft's merged model")


def lone_layer(module: Any, conv: bool, base_sd: dict[str, torch.Tensor], ab: dict[str, torch.Tensor], r: int,
               alpha: float) -> dict[str, Any]:
    """delta_weight of a LoRALayer around one nn.Linear or Conv1D, and lora_A afterwards."""
    w = base_sd["weight"]
    d_in, d_out = w.shape if conv else w.shape[::-1]
    if conv:
        base = [["import", "transformers.pytorch_utils"], ["method", 0, "Conv1D", [["val", d_out], ["val", d_in]]]]
    else:
        base = [["import", "torch.nn"], ["method", 0, "Linear", [["val", d_in], ["val", d_out]]]]
    prog = base + [
        ["call", "LoRALayer", [["reg", 1], ["val", r], ["val", alpha], ["val", conv]]],          # 2
        ["method", 2, "load_state_dict", [["val", {f"base.{k}": v for k, v in base_sd.items()} | ab]]],
        ["call", "delta_weight", [["reg", 2]]],                                                   # 4
        ["method", 4, "detach", []],                                                              # 5
        ["getattr", 2, "lora_A"],                                                                 # 6
        ["method", 6, "detach", []],                                                              # 7
    ]
    delta, a = probes.run_program(module, prog, [5, 7])
    return {"delta": delta, "lora_A": a}


def expect_delta(expect: Any, rng: Any, conv: bool, d_in: int, d_out: int, r: int, alpha: float) -> None:
    base = Conv1D(d_out, d_in) if conv else nn.Linear(d_in, d_out)
    with torch.no_grad():
        for p in base.parameters():
            p.copy_(rng.randn(*p.shape, scale=0.3))
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = get_peft_model(nn.Sequential(base), LoraConfig(r=r, lora_alpha=alpha, target_modules=["0"],
                                                                 init_lora_weights=False, fan_in_fan_out=conv))
    layer = wrapped.base_model.model[0]
    ab = {"lora_A": rng.randn(r, d_in, scale=d_in ** -0.5), "lora_B": rng.randn(d_out, r, scale=0.5)}
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ab["lora_A"])
        layer.lora_B["default"].weight.copy_(ab["lora_B"])
        truth = layer.get_delta_weight("default")
    what = (f"delta_weight(LoRALayer({'Conv1D' if conv else 'nn.Linear'} {d_in} -> {d_out}, r={r}, alpha={alpha}"
            + (", fan_in_fan_out=True: weight stored (in, out)" if conv else "") + "))")
    run = OncePerModule(lambda m: lone_layer(m, conv, base_sd, ab, r, alpha))

    got = run(expect.solution)
    expect.compare(got["delta"], truth, lambda m: run(m)["delta"], **W_TOL, name=f"{what} vs peft's get_delta_weight")
    expect.compare(got["lora_A"], ab["lora_A"], lambda m: run(m)["lora_A"], name=f"{what}: lora_A afterwards (unchanged)")


@pytest.mark.points(2)
def test_delta_weight_linear_and_conv1d(expect, rng):
    expect_delta(expect, rng, False, 9, 7, 3, 6.0)
    expect_delta(expect, rng, True, 8, 8, 2, 5.0)  # square: a missing transpose runs, and is wrong
    expect_delta(expect, rng, True, 6, 15, 4, 4.0)


@pytest.mark.points(2)
def test_llama_merge_unmerge_matches_peft(expect, rng):
    expect_sequence(expect, rng, llama(), ("q_proj", "v_proj", "down_proj"), 4, 8.0, ("merge", "unmerge"))


@pytest.mark.points(2)
def test_gpt2_square_conv1d_matches_peft(expect, rng):
    # attn.c_proj is (16, 16): without the transpose the update lands on the wrong entries
    expect_sequence(expect, rng, gpt2(), ("attn.c_proj",), 3, 6.0, ("merge", "unmerge"))


@pytest.mark.points(2)
def test_gpt2_conv1d_matches_peft(expect, rng):
    expect_sequence(expect, rng, gpt2(), ("c_attn", "c_proj", "c_fc"), 2, 5.0, ("merge",))


@pytest.mark.points(2)
def test_merge_and_unmerge_are_idempotent(expect, rng):
    # merging twice adds once, unmerging twice (or before any merge) subtracts once
    ops = ("unmerge", "merge", "merge", "unmerge", "unmerge", "merge")
    expect_sequence(expect, rng, llama(), ("o_proj", "up_proj"), 2, 3.0, ops)


@pytest.mark.hidden
def test_hidden_fresh_models(expect, rng):
    """Models, ranks and sequences the public checks do not use: a GPT-2 of width 24 (c_attn
    24 -> 72) and a Llama of width 32, fresh weights, rank 1 and 7, merge_and_unload straight
    after a merge and unmerge, and after a double merge."""
    seed = int(rng.np.integers(1, 1 << 30))
    expect_sequence(expect, rng, gpt2(hidden=24, heads=3, seed=seed), ("c_attn", "mlp.c_proj"), 1, 4.0,
                    ("merge", "unmerge", "unmerge"))
    expect_sequence(expect, rng, llama(hidden=32, seed=seed + 1), ("k_proj", "gate_proj", "lm_head"), 7, 2.0,
                    ("merge", "merge"))
    expect_delta(expect, rng, True, 11, 5, 3, 9.0)
