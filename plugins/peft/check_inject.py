"""Checks for peft.inject: `apply_lora` against `peft.get_peft_model` on tiny Hugging Face models
(LlamaForCausalLM, GPT2LMHeadModel) built from configs with random weights.

The student's model is built in the solution's process (a model is not data, so it cannot
cross): a program there builds it from the config, loads the judge's weights, calls
`apply_lora`, and reads back `count_trainable`, every parameter's name and requires_grad
flag, and the logits. The truth is `get_peft_model(model, LoraConfig(target_modules=...,
init_lora_weights=False))` on the same model: its trainable count
(`get_nb_trainable_parameters`), its parameter names mapped to the stub's (peft's
`q_proj.base_layer.weight` is `q_proj.base.weight`, `q_proj.lora_A.default.weight` is
`q_proj.lora_A`) and its logits once both hold the same random A and B.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model

from grader import probes
from grader.checks import OncePerModule, TinyLM, one_torch_thread

# float32 logits of size ~1 through a few layers with adapters scaled up to 16: an ulp per layer
# (another order of the same products) grows to ~3e-5; every known mistake is off by far more
TOL = {"atol": 1e-4, "rtol": 1e-4}


class Spec(TinyLM):
    """A tiny LM whose name in messages says its depth (the name-matching checks vary it)."""

    def __str__(self) -> str:
        return TinyLM.__str__(self) + f"({self.kwargs.get('num_hidden_layers', self.kwargs.get('n_layer'))} layers)"


def llama(layers: int = 2, hidden: int = 24, seed: int = 0) -> Spec:
    kwargs = {"vocab_size": 61, "hidden_size": hidden, "intermediate_size": 2 * hidden - 6,
              "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 32, "initializer_range": 0.2, "attn_implementation": "eager",
              "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    return Spec.of("llama", seed, **kwargs)


def gpt2(layers: int = 2, seed: int = 0) -> Spec:
    kwargs = {"vocab_size": 53, "n_embd": 16, "n_layer": layers, "n_head": 2, "n_positions": 32,
              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.2,
              "attn_implementation": "eager", "bos_token_id": None, "eos_token_id": None}
    return Spec.of("gpt2", seed, **kwargs)



def peft_name(name: str) -> str:
    """peft's parameter name as the stub names it."""
    name = name.removeprefix("base_model.model.").replace(".base_layer.", ".base.")
    return name.replace(".lora_A.default.weight", ".lora_A").replace(".lora_B.default.weight", ".lora_B")


@functools.lru_cache(maxsize=16)
def peft_truth(spec: Spec, targets: tuple[str, ...], r: int, alpha: float, seed: int) -> dict[str, Any]:
    """get_peft_model on a copy of the judge's model, with A and B drawn under `seed` (B nonzero):
    the trainable count, {name: requires_grad}, the state dict in the stub's names, the logits."""
    model = get_peft_model(copy.deepcopy(spec.build()),
                           LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                                      init_lora_weights=False))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if ".lora_B." in name else p.shape[1] ** -0.5))
    ids = torch.randint(0, spec.kwargs["vocab_size"], (2, 7), generator=gen)
    with torch.no_grad(), one_torch_thread():
        logits = model(input_ids=ids).logits
    return {
        "count": model.get_nb_trainable_parameters()[0],
        "flags": {peft_name(n): p.requires_grad for n, p in model.named_parameters()},
        "state": {peft_name(n): t.clone() for n, t in model.state_dict().items()},
        "ids": ids,
        "logits": logits,
    }


def _build(spec: Spec) -> list[Any]:
    return spec.program() + [  # register 4: the model
        ["import", "builtins"],                                                # 7
        ["import", "operator"],                                                # 8
    ]


def injected(module: Any, spec: Spec, targets: tuple[str, ...], r: int, alpha: float,
             ids: torch.Tensor) -> dict[str, Any]:
    """apply_lora in the solution's process: count_trainable, {name: requires_grad}, whether the
    same model came back, and the logits as initialised."""
    prog = _build(spec) + [
        ["call", "apply_lora", [["reg", 4], ["val", list(targets)], ["val", r], ["val", alpha]]],  # 9
        ["call", "count_trainable", [["reg", 9]]],                             # 10
        ["method", 8, "is_", [["reg", 9], ["reg", 4]]],                         # 11
        ["method", 8, "itemgetter", [["val", 0]]],                              # 12
        ["method", 4, "named_parameters", []],                                  # 13
        ["method", 7, "map", [["reg", 12], ["reg", 13]]],                       # 14
        ["method", 7, "list", [["reg", 14]]],                                   # 15 names
        ["method", 8, "attrgetter", [["val", "requires_grad"]]],                # 16
        ["method", 4, "parameters", []],                                        # 17
        ["method", 7, "map", [["reg", 16], ["reg", 17]]],                       # 18
        ["method", 7, "list", [["reg", 18]]],                                   # 19 flags
        ["method", 4, "__call__", [["val", ids]]],                              # 20
        ["getattr", 20, "logits"],                                              # 21
        ["method", 21, "detach", []],                                           # 22
    ]
    count, same, names, flags, logits = probes.run_program(module, prog, [10, 11, 15, 19, 22])
    return {"count": count, "same": same, "flags": dict(zip(names, flags)), "logits": logits}


def loaded_logits(module: Any, spec: Spec, targets: tuple[str, ...], r: int, alpha: float,
                  state: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """apply_lora, then load peft's state dict (in the stub's names, strict), then the logits."""
    prog = _build(spec) + [
        ["call", "apply_lora", [["reg", 4], ["val", list(targets)], ["val", r], ["val", alpha]]],  # 9
        ["method", 4, "load_state_dict", [["val", state]]],                     # 10
        ["method", 4, "__call__", [["val", ids]]],                              # 11
        ["getattr", 11, "logits"],                                              # 12
        ["method", 12, "detach", []],                                           # 13
    ]
    return probes.run_program(module, prog, [13])[0]


def expect_injection(expect: Any, rng: Any, spec: Spec, targets: tuple[str, ...], r: int, alpha: float) -> None:
    truth = peft_truth(spec, targets, r, alpha, int(rng.np.integers(1 << 30)))
    what = f"apply_lora({spec}, target_modules={list(targets)}, r={r}, alpha={alpha})"
    ids = truth["ids"]

    # one program per module (the student's, each known mistake's) for all the comparisons
    runs = OncePerModule(lambda m: injected(m, spec, targets, r, alpha, ids))

    def run(m: Any, key: str) -> Any:
        return runs(m)[key]

    with one_torch_thread(expect.solution):
        got = {key: run(expect.solution, key) for key in ("count", "same", "flags", "logits")}
        expect.compare(got["count"], truth["count"], lambda m: run(m, "count"),
                       name=f"{what}: count_trainable(model) vs peft's get_nb_trainable_parameters()[0]")
        expect.compare(got["flags"], truth["flags"], lambda m: run(m, "flags"),
                       name=f"{what}: {{parameter name: requires_grad}} vs get_peft_model's (in the stub's names: "
                            "q_proj.base.weight for peft's q_proj.base_layer.weight, q_proj.lora_A for "
                            "q_proj.lora_A.default.weight)")
        expect.compare(got["same"], True, lambda m: run(m, "same"),
                       name=f"{what} returns the model it was given (changed in place)")
        with torch.no_grad():
            base_logits = spec.build()(input_ids=ids).logits
        expect.compare(got["logits"], base_logits, lambda m: run(m, "logits"), **TOL,
                       name=f"{what}: logits as initialised equal the model's before apply_lora (B = 0)")
        expect(lambda m: loaded_logits(m, spec, targets, r, alpha, truth["state"], ids), truth=truth["logits"],
               **TOL, name=f"{what}, then load_state_dict(peft's weights with random A and B, in the stub's "
                           "names): logits vs the peft model's")


@pytest.mark.points(3)
def test_attention_targets_match_get_peft_model(expect, rng):
    expect_injection(expect, rng, llama(), ("q_proj", "v_proj"), 4, 8.0)


@pytest.mark.points(2)
def test_every_linear_of_the_blocks(expect, rng):
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    expect_injection(expect, rng, llama(), targets, 2, 3.0)


@pytest.mark.points(2)
def test_names_match_whole_components(expect, rng):
    # "head" is not "lm_head", "0.self_attn.q_proj" is layer 0 alone (not 10), "mlp.up_proj" a
    # two-component suffix; a target that matches nothing ("proj") is fine beside ones that do
    targets = ("0.self_attn.q_proj", "head", "mlp.up_proj", "proj")
    expect_injection(expect, rng, llama(layers=11, hidden=16), targets, 3, 6.0)


def trainable_after(module: Any, spec: Spec, unfreeze: tuple[str, ...]) -> int:
    """count_trainable of the plain model with everything frozen but the `unfreeze` submodules
    (all of it trainable when `unfreeze` is None)."""
    prog = _build(spec)
    if unfreeze is not None:
        prog.append(["method", 4, "requires_grad_", [["val", False]]])
        for name in unfreeze:
            prog.append(["method", 4, "get_submodule", [["val", name]]])
            prog.append(["method", len(prog) - 1, "requires_grad_", [["val", True]]])
    prog.append(["call", "count_trainable", [["reg", 4]]])
    return probes.run_program(module, prog, [len(prog) - 1])[0]


def test_count_trainable_counts_shared_tensors_once(expect, rng):
    # GPT-2 ties lm_head.weight to transformer.wte.weight: one tensor, counted once
    spec = gpt2()
    model = copy.deepcopy(spec.build())
    expect(lambda m: trainable_after(m, spec, None), truth=sum(p.numel() for p in model.parameters()),
           name=f"count_trainable({spec}, every parameter trainable; lm_head.weight is transformer.wte.weight) "
                "vs model.num_parameters()")
    for unfreeze in (("lm_head",), ("transformer.h.1.attn", "transformer.ln_f"), ()):
        model.requires_grad_(False)
        for name in unfreeze:
            model.get_submodule(name).requires_grad_(True)
        truth = sum(p.numel() for p in model.parameters() if p.requires_grad)
        expect(lambda m, u=unfreeze: trainable_after(m, spec, u), truth=truth,
               name=f"count_trainable({spec} with every parameter frozen but those of {list(unfreeze)})")


@pytest.mark.hidden
def test_hidden_fresh_models_and_targets(expect, rng):
    """Models and targets the public checks do not use: a 3-layer Llama with fresh weights and
    the output head as a target, and a target of one layer's MLP only."""
    seed = int(rng.np.integers(1, 1 << 30))
    expect_injection(expect, rng, llama(layers=3, hidden=32, seed=seed), ("lm_head", "o_proj", "2.mlp.down_proj"),
                     5, 2.5)
    expect_injection(expect, rng, llama(layers=2, hidden=24, seed=seed + 1), ("layers.1.mlp.gate_proj", "k_proj"),
                     1, 16.0)
