"""Checks for pretraining.checkpoint: 10 steps in one go vs 5 + save + load + 5, bit for bit.

Ground truth is the uninterrupted run itself. `probes.checkpoint_run` trains a small dropout
model with AdamW, LinearLR and a batch generator in the student's process, twice: once
straight through, once stopping at the save points, where the student's `save_checkpoint`
writes the file and the student's `load_checkpoint` restores it into fresh objects built from
other seeds. Both runs happen in the same process, so everything must be torch.equal: the
losses and the final weights and optimizer state against the uninterrupted run's; and, right
after each load, every part of the state against what the objects held when they were saved.
That last comparison names the part that came back wrong (model, optimizer, lr, scheduler,
generator, global RNG, train mode, step) and says how: untouched (still the fresh object's),
rewound to an earlier step, or simply wrong.

The known mistakes are run by the judge with the same probe; what is compared with them is
the list of findings (which part is wrong, and how), never raw floats from another process.
Every run's size (vocabulary, widths, dropout, steps) comes from its spec, so the hidden check
can train another model for another number of steps with the same findings.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

from grader import probes
from grader.compare import check

TOTAL = 10
VOCAB = 13
HYPER = {
    "vocab": VOCAB, "dim": 8, "hidden": 16, "dropout": 0.3, "seq_len": 6, "batch": 4,
    # A large lr, so a step done twice or with other moments moves the weights far.
    "lr": 0.05, "betas": (0.9, 0.99), "weight_decay": 0.1,
    # The lr climbs through all 10 steps: a scheduler that starts over is visible at once.
    "start_factor": 0.25, "warmup_steps": TOTAL, "total_steps": TOTAL,
}
FILE = "checkpoint.pt"  # the probe's file name in `path`

# Each part of the state: what it is (and its verb), and how to save and restore it.
PARTS = {
    "model": ("the model's weights", "are", "save model.state_dict() and restore it with model.load_state_dict()"),
    "optimizer": (
        "AdamW's state (per parameter exp_avg, exp_avg_sq and step; each param group's lr)", "is",
        "save optimizer.state_dict() and restore it with optimizer.load_state_dict(): without Adam's moments "
        "and step counts the next updates are not the same",
    ),
    "lr": (
        "the param groups' learning rate", "is",
        "it is part of optimizer.state_dict() (its param_groups): restore the optimizer's state_dict",
    ),
    "scheduler": (
        "the LR scheduler's state_dict()", "is",
        "save scheduler.state_dict() and restore it with scheduler.load_state_dict(), or the schedule starts over",
    ),
    "generator": (
        "the data generator's state", "is",
        "save generator.get_state() and restore it with generator.set_state(): the state, not the seed, "
        "says which batches come next",
    ),
    "rng": (
        "the global torch RNG state", "is",
        "save torch.get_rng_state() and restore it with torch.set_rng_state(): dropout draws its masks from it",
    ),
}
RESTORED = "restored"
FRESH = "not restored: still the fresh object's"


def _spec(rng: Any, **hyper: Any) -> dict[str, Any]:
    spec = {**HYPER, **hyper}
    return {**spec, "tokens": rng.randint(0, spec["vocab"], (300,)), "seed": int(rng.randint(0, 2**30, (1,)))}


def run(namespace: Any, spec: dict[str, Any], save_at: list[int]) -> dict[str, Any]:
    return probes.checkpoint_run(namespace, spec, spec["total_steps"], save_at)


def _same(a: Any, b: Any) -> bool:
    """Bitwise equality of nested tensors, dicts, lists and plain values."""
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(b, dict):
        return isinstance(a, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _part(state: dict[str, Any], part: str) -> Any:
    key = {"model": "params", "optimizer": "optimizer", "lr": "lrs", "scheduler": "scheduler",
           "generator": "generator", "rng": "rng"}[part]
    return state[key]


def _how(got: Any, part: str, save: dict[str, Any], trace: list[dict[str, Any]]) -> str:
    """How a part came back from load_checkpoint: as saved, as the fresh object had it, or as at another step.

    `trace` is the resumed run's own: later saves are judged against what was saved then,
    so a mistake at the first resume is not blamed again on every later one.
    """
    if _same(got, _part(save["saved"], part)):
        return RESTORED
    if _same(got, _part(save["fresh"], part)):
        return FRESH
    for record in trace:
        if record["step"] < save["at"] and _same(got, _part(record, part)):
            return f"as at step {record['step']}"
    return "wrong: as at no step of the run"


def _losses(resumed: dict[str, Any], straight: dict[str, Any], total: int) -> tuple[str, str]:
    """(finding, prose) for the sequence of (step, loss) of the resumed run vs the straight one."""
    got = [(r["step"], r["loss"]) for r in resumed["trace"]]
    exp = [(r["step"], r["loss"]) for r in straight["trace"]]
    for i in range(max(len(got), len(exp))):
        if i >= len(got) or i >= len(exp) or got[i][0] != exp[i][0] or not _same(got[i][1], exp[i][1]):
            break
    else:
        return "identical", ""
    steps = [s for s, _ in got]
    if steps != [s for s, _ in exp]:
        return (f"differ from update {i}: steps run {steps}",
                f"the resumed run ran the steps {steps} instead of 0 to {total - 1}, once each")
    return (f"differ from step {i}",
            f"the losses first differ at step {i}: got {float(got[i][1]):.9g}, expected {float(exp[i][1]):.9g}")


def findings(resumed: dict[str, Any], straight: dict[str, Any], save_at: list[int],
             total: int) -> tuple[dict[str, Any], list[str]]:
    """What came back wrong in a run of `total` steps, as categories (compared with the known
    mistakes), and in prose."""
    found: dict[str, Any] = {}
    prose: list[str] = []
    for k, s in enumerate(save_at):
        where = f"(save at step {s})"
        if k >= len(resumed["saves"]):
            found[f"load {where}"] = "never reached"
            continue
        save = resumed["saves"][k]
        if save["loaded"] is None:
            found[f"load {where}"] = f"no file at path; files written: {save['files']}"
            prose.append(f"save_checkpoint(path, ..., step={s}) wrote no file at `path` (the directory holds "
                         f"{save['files']}): write the checkpoint to exactly that path")
            continue
        returned = save["returned"]  # None unless an int in [0, total]: then the loop stopped
        kind = "" if save["returned_type"] == "int" else f" (a {save['returned_type']})"
        found[f"step returned {where}"] = str(returned) if returned is not None else save["returned_repr"] + kind
        if returned != s:
            stop = "" if returned is not None else f"; the loop stops on anything but an int in [0, {total}]"
            prose.append(f"load_checkpoint returned {save['returned_repr']}{kind} after save_checkpoint(..., "
                         f"step={s}): return exactly the saved step, the Python int {s} (the number of updates done, "
                         f"which is the next step to run){stop}")
        loaded = save["loaded"]
        for part, (what, verb, fix) in PARTS.items():
            how = _how(_part(loaded, part), part, save, resumed["trace"])
            found[f"{part} after loading {where}"] = how
            if how == RESTORED or (part == "lr" and found[f"optimizer after loading {where}"] != RESTORED):
                continue  # the lr is restored with the optimizer's state_dict: one message for both
            detail = ""
            if part == "scheduler":
                got_epoch = _part(loaded, part).get("last_epoch")
                want_epoch = _part(save["saved"], part).get("last_epoch")
                detail = f" (last_epoch {got_epoch}, saved with {want_epoch})" if got_epoch != want_epoch else ""
            if how == FRESH:
                how_text = "still the fresh object's (not restored)"
            elif how.startswith("as at step"):
                how_text = f"{how}, not as at step {s} when saved"
            else:
                how_text = f"not as at step {s} when saved"
            prose.append(f"after load_checkpoint at step {s}, {what}{detail} {verb} {how_text}. To fix: {fix}")
        mode = "train" if loaded["training"] else "eval"
        found[f"model mode after loading {where}"] = mode
        if mode == "eval":
            prose.append(f"after load_checkpoint at step {s} the model is in eval mode, so dropout is off: the loop "
                         "goes on training, leave the model's mode as it is (no model.eval())")
    loss_finding, loss_prose = _losses(resumed, straight, total)
    found["losses"] = loss_finding
    if loss_prose:
        prose.append(loss_prose)
    for key, part, what in (("final weights", "params", "the final weights are"),
                            ("final optimizer state", "optimizer", "the final AdamW state is")):
        same = _same(resumed["final"][part], straight["final"][part])
        found[key] = "identical" if same else "differ"
        if not same:
            prose.append(f"{what} not the uninterrupted run's")
    return found, prose


def expected_findings(save_at: list[int]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for s in save_at:
        where = f"(save at step {s})"
        found[f"step returned {where}"] = str(s)
        found.update({f"{part} after loading {where}": RESTORED for part in PARTS})
        found[f"model mode after loading {where}"] = "train"
    return {**found, "losses": "identical", "final weights": "identical", "final optimizer state": "identical"}


@functools.lru_cache(maxsize=8)
def _judge_straight(frozen: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    # The known mistakes run in the judge, so their straight run must be the judge's own.
    spec = dict(frozen)
    return run(None, {**spec, "tokens": torch.tensor(spec["tokens"])}, [])


def _plan(save_at: list[int], total: int) -> str:
    parts, done = [], 0
    for s in save_at:
        if s > done:
            parts.append(f"{s - done} steps")
        parts.append(f"save_checkpoint(..., step={s}), load_checkpoint into fresh objects")
        done = s
    if total > done:
        parts.append(f"{total - done} steps")
    return " + ".join(parts)


def _check_resume(expect: Any, rng: Any, save_at: list[int], about: str = "", **hyper: Any) -> None:
    spec = _spec(rng, **hyper)
    total = spec["total_steps"]
    straight = run(expect.solution, spec, [])
    found, prose = findings(run(expect.solution, spec, save_at), straight, save_at, total)
    frozen = tuple(sorted({**spec, "tokens": tuple(spec["tokens"].tolist())}.items()))
    lines = "".join(f"\n  - {p}" for p in prose)
    expect.compare(
        found, expected_findings(save_at),
        lambda m: findings(run(m, spec, save_at), _judge_straight(frozen), save_at, total)[0],
        name=(f"{total} training steps in one go vs {_plan(save_at, total)} (AdamW, LinearLR, dropout, batches drawn "
              f"with a torch.Generator{about}): the resumed run must be bitwise identical, and is not:{lines}\n"
              "  In short"),
    )


@pytest.mark.points(3)
def test_resume_midway_is_bitwise_identical(expect, rng):
    _check_resume(expect, rng, [5])


@pytest.mark.points(2)
def test_resume_twice(expect, rng):
    # 3 + 4 + 3: the second checkpoint is saved by objects that were themselves loaded.
    _check_resume(expect, rng, [3, 7])


def test_resume_before_the_first_step(expect, rng):
    # Step 0: the optimizer has no state yet and the scheduler is at its start; the weights,
    # the generator and the global RNG still must come back.
    _check_resume(expect, rng, [0])


def test_resume_after_the_last_step(expect, rng):
    # Saved when training is over: load_checkpoint returns 10 and nothing is left to run,
    # so the final state is exactly what was loaded.
    _check_resume(expect, rng, [TOTAL])


def _weights_only(save: dict[str, Any]) -> str:
    error = save["weights_only_error"]
    return "loads" if error is None else f"refused ({error.split(':', 1)[0]})"


@pytest.mark.points(2)
def test_checkpoint_is_one_weights_only_file(expect, rng):
    spec = _spec(rng)
    save = run(expect.solution, spec, [4])["saves"][0]
    check(save["files"] == [FILE],
          f"save_checkpoint(path, ..., step=4) with path = <an empty directory>/{FILE}: the directory then held "
          f"{save['files']}, expected exactly one file, {FILE!r}: write the whole checkpoint to `path` and "
          "nothing else")
    missing = save["missing_from_file"]
    check(not missing,
          f"save_checkpoint(path, ..., step=4): the file holds no tensor equal to the parameters {missing[:3]}"
          f"{' ...' if len(missing) > 3 else ''}: the checkpoint must be in the file itself (a run resumes in "
          "another process, from the file alone), e.g. model.state_dict() inside the dict you torch.save")
    expect.compare(
        _weights_only(save), "loads", lambda m: _weights_only(run(m, spec, [4])["saves"][0]),
        name=(f"torch.load(path, weights_only=True) on the file save_checkpoint(path, ..., step=4) wrote: "
              f"{save['weights_only_error']}\n"
              "  The weights-only loader accepts tensors and plain Python values (dicts, lists, tuples, numbers, "
              "str, bool, None) and never runs code from the file; save state_dict()s and get_state()s, never whole "
              "modules, optimizers or generators (those are pickled as objects)\n  In short"),
    )


@pytest.mark.hidden
def test_hidden_other_model_and_save_points(expect, rng):
    """Another model (vocabulary 23, widths 12 and 20, dropout 0.5, windows of 9, batches of 3)
    trained for 13 steps instead of 10, resumed three times at steps drawn at random from
    1..12: save points the public checks never use, so a solution tuned to steps 0, 3, 5, 7
    and 10 or to the public run's sizes is caught."""
    save_at = sorted(int(s) for s in rng.np.choice(np.arange(1, 13), size=3, replace=False))
    _check_resume(expect, rng, save_at, about=", a vocabulary of 23, dropout 0.5", vocab=23, dim=12, hidden=20,
                  dropout=0.5, seq_len=9, batch=3, warmup_steps=13, total_steps=13)
