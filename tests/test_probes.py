"""The trusted probes, called in place (direct mode) with small namespaces made here."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from grader import probes

SPEC = {
    "tokens": torch.randint(0, 11, (120,), generator=torch.Generator().manual_seed(0)),
    "vocab": 11, "dim": 6, "hidden": 10, "dropout": 0.3, "seq_len": 5, "batch": 3,
    "lr": 0.05, "betas": (0.9, 0.99), "weight_decay": 0.1, "start_factor": 0.25, "warmup_steps": 6, "seed": 7,
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _checkpointer(restore: bool = True) -> tuple[SimpleNamespace, list[tuple[str, str]]]:
    """save_checkpoint/load_checkpoint that keep everything (or, restore=False, restore nothing)."""
    calls: list[tuple[str, str]] = []

    def save_checkpoint(path: str, model: Any, optimizer: Any, scheduler: Any, generator: Any, step: int) -> None:
        calls.append(("save", path))
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                    "rng": torch.get_rng_state(), "step": step}, path)

    def load_checkpoint(path: str, model: Any, optimizer: Any, scheduler: Any, generator: Any) -> int:
        calls.append(("load", path))
        saved = torch.load(path, weights_only=True)
        if restore:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["rng"])
        return saved["step"]

    return SimpleNamespace(save_checkpoint=save_checkpoint, load_checkpoint=load_checkpoint), calls


def test_checkpoint_run_resumes_bitwise_with_a_complete_checkpoint():
    straight = probes.checkpoint_run(None, SPEC, 6)  # no save points: nothing of the namespace is called
    namespace, calls = _checkpointer()
    resumed = probes.checkpoint_run(namespace, SPEC, 6, [2, 4])
    assert [r["step"] for r in resumed["trace"]] == [r["step"] for r in straight["trace"]] == list(range(6))
    assert _same([r["loss"] for r in resumed["trace"]], [r["loss"] for r in straight["trace"]])
    assert _same(resumed["final"], straight["final"])
    assert [(s["at"], s["returned"], s["files"], s["weights_only_error"]) for s in resumed["saves"]] == [
        (2, 2, ["checkpoint.pt"], None), (4, 4, ["checkpoint.pt"], None)]
    for save in resumed["saves"]:
        assert _same(save["loaded"], save["saved"])
        assert _same(save["saved"], {k: v for k, v in straight["trace"][save["at"]].items() if k in save["saved"]})
    # load_checkpoint gets a copy under another name; the file save_checkpoint wrote is gone by then.
    (_, saved_to), (_, loaded_from) = calls[:2]
    assert os.path.basename(saved_to) == "checkpoint.pt" and loaded_from != saved_to
    assert not os.path.exists(saved_to) and not os.path.exists(loaded_from)


def test_checkpoint_run_builds_fresh_objects_from_other_seeds():
    # A load that restores nothing leaves the fresh objects as built: they must differ from the
    # saved ones in every seeded part, or a checkpoint missing that part would go unnoticed.
    namespace, _ = _checkpointer(restore=False)
    run = probes.checkpoint_run(namespace, SPEC, 6, [3])
    save = run["saves"][0]
    assert _same(save["loaded"], save["fresh"])
    for part in ("params", "optimizer", "scheduler", "generator", "rng"):
        assert not _same(save["fresh"][part], save["saved"][part]), part
    straight = probes.checkpoint_run(None, SPEC, 6)
    assert not _same(run["final"]["params"], straight["final"]["params"])


def test_checkpoint_run_leaves_the_global_rng_alone_and_checks_save_points():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    probes.checkpoint_run(_checkpointer()[0], SPEC, 4, [2])
    assert torch.equal(torch.get_rng_state(), before)
    for bad in ([3, 1], [5], [-1]):
        with pytest.raises(ValueError, match="save_at"):
            probes.checkpoint_run(_checkpointer()[0], SPEC, 4, bad)


def test_checkpoint_run_stops_when_load_returns_no_step():
    namespace, _ = _checkpointer()
    namespace.load_checkpoint = lambda *args: None
    run = probes.checkpoint_run(namespace, SPEC, 6, [2])
    assert [r["step"] for r in run["trace"]] == [0, 1]
    assert (run["saves"][0]["returned"], run["saves"][0]["returned_type"]) == (None, "NoneType")


def test_checkpoint_run_sees_a_checkpoint_kept_in_memory():
    # A solution that keeps the state in a variable and writes a token file resumes in its own
    # process, but the file could not resume anything: the probe names the parameters it lacks.
    namespace, _ = _checkpointer()
    kept: dict[str, Any] = {}
    save, load = namespace.save_checkpoint, namespace.load_checkpoint

    def save_in_memory(path: str, *objects: Any) -> None:
        kept["buffer"] = io.BytesIO()
        save(kept["buffer"], *objects)
        torch.save({"step": objects[-1]}, path)

    def load_from_memory(path: str, *objects: Any) -> int:
        kept["buffer"].seek(0)
        return load(kept["buffer"], *objects)

    namespace.save_checkpoint, namespace.load_checkpoint = save_in_memory, load_from_memory
    run = probes.checkpoint_run(namespace, SPEC, 6, [3])
    assert run["saves"][0]["missing_from_file"] == ["0.weight", "2.weight", "2.bias", "5.weight", "5.bias"]
    assert probes.checkpoint_run(_checkpointer()[0], SPEC, 6, [3])["saves"][0]["missing_from_file"] == []


def test_run_program_imports_a_module_into_a_register():
    # A check builds library objects in the solution's process: ["import", "torch"] is that
    # process's own torch module.
    program = [["import", "torch"], ["method", 0, "zeros", [["val", 3]]], ["getattr", 0, "__name__"]]
    zeros, name = probes.run_program(SimpleNamespace(), program, [1, 2])
    assert name == "torch" and torch.equal(zeros, torch.zeros(3))


def test_largest_allocation_sees_every_tensor_an_op_creates_but_not_views():
    x = torch.randn(8, 4)

    def outer(x: torch.Tensor) -> torch.Tensor:
        full = x @ x.t()  # (8, 8): 64 elements
        return full.sum(-1)

    def tiled(x: torch.Tensor) -> torch.Tensor:
        view = x.t().expand(2, 4, 8)  # a view of 64 elements allocates nothing
        return torch.stack([(x[i : i + 2] @ x.t()).sum(-1) for i in range(0, 8, 2)]).flatten() + view.sum() * 0

    seen = probes.largest_allocation(outer, [x])
    assert (seen["numel"], seen["op"], seen["shape"]) == (64, "mm", [8, 8])
    assert torch.allclose(seen["result"], (x @ x.t()).sum(-1))
    assert probes.largest_allocation(tiled, [x])["numel"] < 64
    assert probes.largest_allocation(lambda x: x.add_(1), [x.clone()])["numel"] == 0


def test_matmul_flops_counts_the_products_a_call_makes():
    x, w = torch.randn(6, 4), torch.randn(5, 4)
    seen = probes.matmul_flops(torch.nn.functional.linear, [x, w])
    assert seen["flops"] == 2 * 6 * 4 * 5 and torch.equal(seen["result"], x @ w.t())
    rows = probes.matmul_flops(lambda x, w: torch.nn.functional.linear(x[:2], w), [x, w])
    assert rows["flops"] == 2 * 2 * 4 * 5  # only the rows it multiplies
    assert probes.matmul_flops(lambda x: x * 2, [x])["flops"] == 0


def test_largest_allocation_counts_what_is_held_at_once():
    """Rows of a score matrix kept in a list: no single tensor is (N, N), but N * N elements
    are held at once; made and dropped one at a time, a row's worth at most."""
    n = 64
    x = torch.randn(n, 8)

    def rows(x: torch.Tensor, keep: bool) -> torch.Tensor:
        kept, out = [], []
        for i in range(n):
            p = torch.softmax(x[i] @ x.t(), -1)
            out.append(p @ x)
            if keep:
                kept.append(p)
        return torch.stack(out)

    held = probes.largest_allocation(rows, [x, True])
    assert held["numel"] == n * 8 and held["peak_numel"] >= n * n  # the stacked result is the largest one
    dropped = probes.largest_allocation(rows, [x, False])
    assert dropped["numel"] == n * 8 and dropped["peak_numel"] < 4 * n * 8
    view = probes.largest_allocation(lambda x: (x @ x.t())[:1], [x])  # the (n, n) product lives on in its view
    assert view["peak_numel"] == n * n


def test_the_input_check_around_a_call_is_not_counted_as_its_work():
    """A guarded function copies its arguments before the call and compares them after:
    the grader's work, which a probe watching the call must not see."""
    from grader.sandbox.inputs import guarded

    x, w = torch.randn(64, 32), torch.randn(16, 32)
    plain = probes.largest_allocation(torch.nn.functional.linear, [x, w])
    watched = probes.largest_allocation(guarded(torch.nn.functional.linear), [x, w])
    assert (watched["numel"], watched["peak_numel"]) == (plain["numel"], plain["peak_numel"]) == (64 * 16, 64 * 16)
