"""The check library: one call for "the same call on the solution, the truth and every
known mistake", and the properties several exercises share.

A check asks for the `expect` fixture, an `Expect` bound to the student's solution and the
exercise's known mistakes (mutants):

    def test_softmax(expect, rng):
        x = rng.randn(4, 7)
        expect(lambda s: s.softmax(x, dim=0), truth=F.softmax(x, dim=0), atol=1e-6, rtol=1e-5,
               name="softmax(x, dim=0)")

`call` is written once: it runs on the solution (in its sandboxed process when grading is
isolated) and, only when the comparison fails, on each known mistake in the judge, so the
message can name the mistake whose output the student's equals. With `atol`/`rtol` the
comparison is `assert_close`; without, exact (`assert_equal`).

The properties are methods of the same object (`expect.causal`, `expect.gradients`,
`expect.in_place`, `expect.hf_parity`, `expect.seeded`: a function given a `generator`
draws from it and from nothing else) and, for statistics, module functions
(`assert_rate`, `assert_counts`, `assert_mean`) whose false-failure rate is stated in the
message.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from grader import probes
from grader.compare import Mistakes, assert_close, assert_equal, check, fail
from grader.sandbox.protocol import ZERO_TAIL

FALSE_FAILURE = 1e-6
"""The default chance that a statistical check fails a correct solution."""


class Expect:
    """The `expect` fixture: comparisons and properties bound to one solution and its exercise's
    known mistakes. `expect.solution` is the student's module."""

    def __init__(self, solution: Any, mutants: Callable[[], dict[str, tuple[str, Any]]]):
        self.solution = solution
        self._load_mutants = mutants  # called by the first failure that needs them

    def mistakes(self, call: Callable[[Any], Any]) -> Mistakes:
        """What every known mistake returns for `call`: for `fail(..., mistakes=...)` and the
        compare helpers when a verdict is not one comparison."""
        return Mistakes(self._load_mutants, call)

    def __call__(
        self,
        call: Callable[[Any], Any],
        *,
        truth: Any,
        name: str,
        atol: float | None = None,
        rtol: float | None = None,
        check_dtype: bool = True,
    ) -> Any:
        """`call(solution)` must equal `truth`: within `atol + rtol * |truth|` when either is
        given, else exactly. Returns what the solution returned."""
        got = call(self.solution)
        self.compare(got, truth, call, name=name, atol=atol, rtol=rtol, check_dtype=check_dtype)
        return got

    def compare(
        self,
        got: Any,
        truth: Any,
        call: Callable[[Any], Any],
        *,
        name: str,
        atol: float | None = None,
        rtol: float | None = None,
        check_dtype: bool = True,
    ) -> None:
        """Compare a value already computed with `call(solution)` (when the check needs the
        result first, to pick what to compare it with)."""
        if atol is None and rtol is None:
            assert_equal(got, truth, name=name, mistakes=self.mistakes(call))
        else:
            assert_close(got, truth, atol=atol or 0.0, rtol=rtol or 0.0, name=name, mistakes=self.mistakes(call),
                         check_dtype=check_dtype)

    # --- properties ------------------------------------------------------------------------

    def causal(
        self,
        build: Callable[[Any], Callable[[torch.Tensor], Any]],
        x: torch.Tensor,
        *,
        t: int,
        rng: Any,
        name: str,
        vocab_size: int | None = None,
        dim: int = 1,
        scale: float = 1.0,
        output_shape: Sequence[int] | None = None,
        atol: float = 1e-6,
        rtol: float = 1e-6,
    ) -> None:
        """Changing the inputs at positions >= `t` along `dim` must not change the outputs
        before `t`.

        `build(module)` returns what maps inputs to outputs (a model with its weights loaded);
        it is called once per module and used on both inputs. Token ids (`vocab_size` given)
        change to other ids at every later position; float inputs get fresh N(0, scale**2) values.
        """
        changed = future_changed(x, t, rng, vocab_size=vocab_size, dim=dim, scale=scale)
        n = x.shape[dim]
        shape = tuple(output_shape) if output_shape is not None else None

        def both(module: Any) -> tuple[Any, Any]:
            f = build(module)
            return f(x), f(changed)

        before, after = both(self.solution)
        for out in (before, after):
            check(isinstance(out, torch.Tensor) and (shape is None or tuple(out.shape) == shape),
                  f"{name} must return a tensor" + (f" of shape {shape}" if shape is not None else "")
                  + f", got {_describe(out)}")
            check(out.dim() > dim and out.shape[dim] == n,
                  f"{name} must keep the sequence axis ({dim}) of length {n}, got shape {tuple(out.shape)}")
        assert_close(
            after.narrow(dim, 0, t), before.narrow(dim, 0, t), atol=atol, rtol=rtol,
            name=f"{name}: outputs at positions 0..{t - 1} after changing the inputs at positions {t}..{n - 1}"
            " (causal: they must not change)",
            mistakes=self.mistakes(lambda m: both(m)[1].narrow(dim, 0, t)),
        )

    def gradients(
        self,
        fn: Callable[[Any], Any],
        inputs: list[Any],
        *,
        truth: Callable[..., torch.Tensor],
        name: str,
        atol: float,
        rtol: float,
        grad_output: torch.Tensor | None = None,
        output: bool = True,
    ) -> dict[str, Any]:
        """`fn(module)(*inputs)` and its gradients with respect to every floating-point input
        must match `truth(*inputs)` under torch autograd, backpropagating `grad_output` (or
        the sum of the output). The student's backward runs where the student's code runs.
        Returns what the solution gave: `output`, `input_grads`, `param_grads`."""
        want = probes.grad(truth, inputs, grad_output)
        got = probes.grad(fn(self.solution), inputs, grad_output)
        if output:
            self.compare(got["output"], want["output"], lambda m: probes.grad(fn(m), inputs, grad_output)["output"],
                         name=f"{name}: the output", atol=atol, rtol=rtol)
        for i, expected in enumerate(want["input_grads"]):
            if expected is None:
                continue
            check(got["input_grads"][i] is not None,
                  f"{name}: no gradient reached input {i}; it must come from differentiable torch operations")
            self.compare(got["input_grads"][i], expected,
                         lambda m, i=i: probes.grad(fn(m), inputs, grad_output)["input_grads"][i],
                         name=f"{name}: the gradient with respect to input {i}", atol=atol, rtol=rtol)
        return got

    def in_place(
        self,
        fn: Callable[[Any], Any],
        args: list[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        name: str,
        changes: dict[int, Any] | None = None,
        atol: float | None = None,
        rtol: float | None = None,
    ) -> Any:
        """Call `fn(module)(*args, **kwargs)` on copies of `args`: each argument whose index is
        in `changes` must afterwards equal that value (the function works in place), and
        every other argument must be unchanged (the function leaves its inputs alone).
        Returns what the call returned."""
        changes = changes or {}

        def after(module: Any) -> dict[str, Any]:
            return probes.call_inplace(fn(module), [_copy(a) for a in args], kwargs)

        got = after(self.solution)
        for i, before in enumerate(args):
            if i in changes:
                self.compare(got["args"][i], changes[i], lambda m, i=i: after(m)["args"][i],
                             name=f"{name}: argument {i} after the call (it is changed in place)", atol=atol, rtol=rtol)
            else:
                self.compare(got["args"][i], before, lambda m, i=i: after(m)["args"][i],
                             name=f"{name}: argument {i} after the call (your code must not modify its inputs)")
        return got["result"]

    def hf_parity(
        self,
        run: Callable[[Any], Any],
        hf_module: torch.nn.Module,
        state_dict: dict[str, torch.Tensor],
        *args: Any,
        name: str,
        atol: float,
        rtol: float,
        output: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """`run(module)` (the student's module, given the same weights) must match the Hugging
        Face module `hf_module` with `state_dict` loaded, called on `args`/`kwargs` in eval
        mode without gradients; `output` picks what to compare (default: `.logits` when
        the module returns an output object, else the output itself)."""
        truth = hf_output(hf_module, state_dict, *args, output=output, **kwargs)
        return self(run, truth=truth, atol=atol, rtol=rtol,
                    name=f"{name} vs transformers' {type(hf_module).__name__} with the same weights")

    def seeded(
        self,
        fn: Callable[[Any], Any],
        args: list[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        name: str,
        generator: str = "generator",
        seed: int = 20240611,
        other_seed: int = 1_000_003,
        pass_seed: bool = False,
    ) -> Any:
        """`fn(module)`, given a `torch.Generator` as its argument `generator`, must draw its
        randomness from that generator and from nothing else. Called three times in the
        solution's process on fresh copies of `args`, with generators seeded `seed`, `seed`
        and `other_seed`: the two runs seeded alike must give identical results and leave
        identical arguments (bit for bit: an initialiser fills its argument), the run seeded
        otherwise must differ, and torch's, numpy's and Python's global random states must be
        untouched. With `pass_seed` the argument takes the seed itself, an int
        (`mask_tokens(..., seed=s)`), and the same rules hold. A known mistake that breaks the
        same rules the same way is named. Returns what the solution returned on the first run."""
        from grader.inputs import same_value

        def runs(module: Any) -> dict[str, Any]:
            return probes.seeded_runs(fn(module), list(args), dict(kwargs or {}), generator, [seed, seed, other_seed],
                                      pass_seed)

        def observed(got: dict[str, Any]) -> tuple[bool, ...]:
            first, again, other = ((r["result"], r["args"], r["kwargs"]) for r in got["runs"])
            changed = got["changed"]
            return (same_value(first, again), not same_value(first, other),
                    not changed["torch"], not changed["numpy"], not changed["random"])

        got = runs(self.solution)
        alike, differ, torch_kept, numpy_kept, random_kept = verdict = observed(got)
        g = f"`{generator}`"
        if pass_seed:
            same, different = f"the same {g} ({seed})", f"different values of {g} ({seed} and {other_seed})"
            source = f"a generator of its own, g = torch.Generator().manual_seed({generator})"
            draw = "torch.rand(..., generator=g)"
        else:
            same = f"generators seeded alike (torch.Generator().manual_seed({seed}) as {g})"
            different = f"generators seeded differently ({seed} and {other_seed})"
            source = f"the {g} it is given"
            draw = f"torch.rand(..., generator={generator}), tensor.uniform_(..., generator={generator})"
        problems = []
        if not alike:
            problems.append(f"two calls with {same} returned different tensors: your code draws from something other"
                            f" than {source} (torch's global RNG?)")
        if not torch_kept:
            problems.append(f"torch's global random state changed during the call: draw only from {source} ({draw})"
                            " and never reseed the global generator (torch.manual_seed)")
        if not numpy_kept:
            problems.append(f"numpy's global random state changed during the call (np.random): draw only from {source}")
        if not random_kept:
            problems.append(f"Python's `random` state changed during the call: draw only from {source}")
        if alike and not differ:
            problems.append(f"calls with {different} returned identical tensors: your code must draw its random values"
                            f" from {source} (not from a generator seeded with a constant)")
        if problems:
            fail(f"{name}: " + "; ".join(problems), verdict, self.mistakes(lambda m: observed(runs(m))))
        return got["runs"][0]["result"]

class OncePerModule:
    """`fn(module)` run once per module (the solution's, then each known mistake's), its
    result kept for every later comparison of the check: `run = OncePerModule(lambda m:
    program(m, ...))`, then `expect.compare(got["out"], truth, lambda m: run(m)["out"])`.

    A released course knows a known mistake's rerun by `fn` alone (`grader.release`): what
    is kept here (the solution's results, keyed by the module's id) is left out of it."""

    def __init__(self, fn: Callable[[Any], Any]):
        self.fn = fn
        self._kept: dict[int, tuple[Any, Any]] = {}

    def __call__(self, module: Any) -> Any:
        if id(module) not in self._kept:
            self._kept[id(module)] = (module, self.fn(module))  # the module too: its id stays its own
        return self._kept[id(module)][1]


def zero_tail(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of `t` whose memory is followed by `ZERO_TAIL` zero bytes, as is
    every tensor the solution process receives over the wire.

    For inputs to kernels: one that reads just past the end of its input (a mask off by one,
    a known mistake run in the judge's process) then reads zeros in the judge and in the
    solution process alike, on every run, so the student's output can be told to equal the
    mistake's, and a release can record it."""
    n = t.numel()
    memory = torch.zeros(n + -(-ZERO_TAIL // t.element_size()), dtype=t.dtype)
    memory[:n] = t.detach().reshape(-1)
    return memory[:n].view(t.shape)


@contextlib.contextmanager
def one_torch_thread(where: Any = None) -> Iterator[None]:
    """Run the block with torch on one thread in the judge and, given a solution namespace
    (`expect.solution`), in the process where its code runs; each put back afterwards.

    For tiny models (matrices of kilobytes): a second thread only waits on the first, and on
    a busy machine its spinning makes a check many times slower than the work itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    remote_before = None
    try:
        if where is not None:
            threads = [["import", "torch"], ["method", 0, "get_num_threads", []]]
            remote_before = probes.run_program(where, [*threads, ["method", 0, "set_num_threads", [["val", 1]]]],
                                               [1])[0]
        yield
    finally:
        torch.set_num_threads(before)
        if remote_before is not None:
            with contextlib.suppress(Exception):  # a process that died has said why already
                probes.run_program(where, [["import", "torch"],
                                           ["method", 0, "set_num_threads", [["val", remote_before]]]], [])


def hf_output(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], *args: Any,
              output: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
    """A Hugging Face (or any torch) module's output with `state_dict` loaded, in eval mode
    and without gradients."""
    module.load_state_dict(state_dict)
    module.eval()
    with torch.no_grad():
        out = module(*args, **kwargs)
    if output is not None:
        return output(out)
    return out.logits if hasattr(out, "logits") else out


def load_returned_weights(model: torch.nn.Module, state: Any, what: str, *, returned: str = "the state dict",
                          how: str = "return model.state_dict() of the trained model") -> torch.nn.Module:
    """The judge's own `model` with the weights a solution returned, in eval mode: a failed
    check saying what is wrong when `state` is not a state dict of `model`'s keys and shapes,
    or holds NaN or inf. The student's numbers are never trusted; their weights are measured."""
    kind = type(model).__name__
    check(isinstance(state, dict), f"{what}: {returned} is a {type(state).__name__}, expected {kind}'s state dict"
                                   " {name: tensor}")
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    check(not missing and not extra,
          f"{what}: the returned state dict's keys are not {kind}'s: missing {missing[:5]}, unexpected {extra[:5]};"
          f" {how}")
    for k, v in expected.items():
        got = state[k]
        check(isinstance(got, torch.Tensor) and got.shape == v.shape,
              f"{what}: state[{k!r}] is {getattr(got, 'shape', type(got).__name__)}, expected shape {tuple(v.shape)}")
        check(bool(torch.isfinite(got).all()), f"{what}: state[{k!r}] holds NaN or inf: the training diverged")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


# transformers' class names of the tiny causal LMs checks build: (config, model).
TINY_LM_CLASSES = {"gpt2": ("GPT2Config", "GPT2LMHeadModel"), "llama": ("LlamaConfig", "LlamaForCausalLM")}


@dataclass(frozen=True)
class TinyLM:
    """A tiny Hugging Face causal LM: its kind ("gpt2" or "llama"), its config's keyword
    arguments (a sorted tuple, so that a spec is hashable and caches work) and the seed its
    weights are drawn under. `TinyLM.of("llama", seed=3, hidden_size=24, ...)`.

    `build()` is the judge's copy (float32, eval mode, cached); `program()` is the start of a
    `probes.run_program` that builds the same model in the solution's process (a model is not
    data, so it cannot cross) and loads the judge's weights into it: register 4 holds it.
    """

    kind: str
    config: tuple[tuple[str, Any], ...]
    seed: int = 0

    @classmethod
    def of(cls, kind: str, seed: int = 0, **kwargs: Any) -> TinyLM:
        return cls(kind, tuple(sorted(kwargs.items())), seed)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.config)

    @property
    def config_class(self) -> str:
        return TINY_LM_CLASSES[self.kind][0]

    def __str__(self) -> str:
        return TINY_LM_CLASSES[self.kind][1]

    def build(self) -> torch.nn.Module:
        return _tiny_lm(self)

    def program(self) -> list[Any]:
        return [
            ["import", "transformers"],                                            # 0
            ["getattr", 0, self.config_class],                                     # 1
            ["method", 1, "from_dict", [["val", self.kwargs]]],                    # 2 the config
            ["getattr", 0, "AutoModelForCausalLM"],                                # 3
            ["method", 3, "from_config", [["reg", 2]]],                            # 4 the model
            ["method", 4, "load_state_dict", [["val", self.build().state_dict()]]],
            ["method", 4, "eval", []],
        ]


@functools.lru_cache(maxsize=8)
def _tiny_lm(spec: TinyLM) -> torch.nn.Module:
    import transformers

    config_class, model_class = (getattr(transformers, name) for name in TINY_LM_CLASSES[spec.kind])
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = model_class(config_class(**spec.kwargs))
    return model.float().eval()


def random_state_dict(
    rng: Any, module: torch.nn.Module, scale: Callable[[str, tuple[int, ...]], float | None]
) -> dict[str, torch.Tensor]:
    """Random weights for every entry of `module`'s state dict: N(0, scale**2) values, or
    1 + N(0, scale**2) for entries whose name ends in a norm weight (`ln`, `norm`),
    deterministic under `rng`. `scale(name, shape)` returns None to keep an entry as it is
    (tied weights, buffers)."""
    sd = {}
    for key, value in module.state_dict().items():
        shape = tuple(value.shape)
        s = scale(key, shape)
        if s is None:
            sd[key] = value.clone()
        elif _is_norm_weight(key):
            sd[key] = 1.0 + rng.randn(*shape, scale=s)
        else:
            sd[key] = rng.randn(*shape, scale=s)
    return sd


def _is_norm_weight(key: str) -> bool:
    parts = key.split(".")
    return parts[-1] == "weight" and any(p.startswith(("ln", "norm")) or p.endswith(("norm", "layernorm"))
                                         for p in parts[:-1])


def future_changed(x: torch.Tensor, t: int, rng: Any, *, vocab_size: int | None = None, dim: int = 1,
                   scale: float = 1.0) -> torch.Tensor:
    """`x` with every position >= `t` along `dim` changed: token ids moved to other ids
    (when `vocab_size` is given), floats replaced with fresh N(0, scale**2) values."""
    changed = x.clone()
    later = changed.narrow(dim, t, x.shape[dim] - t)
    if vocab_size is not None:
        shift = 1 + rng.randint(0, vocab_size - 1, tuple(later.shape))  # never 0: every id changes
        later.copy_((later + shift) % vocab_size)
    else:
        later.copy_(rng.randn(*later.shape, dtype=x.dtype, scale=scale))
    return changed


def _copy(a: Any) -> Any:
    return a.clone() if isinstance(a, torch.Tensor) else (a.copy() if hasattr(a, "copy") else a)


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


# --- statistics ----------------------------------------------------------------------------


def binomial_bounds(n: int, p: float, false_failure: float = FALSE_FAILURE) -> tuple[int, int]:
    """The smallest and largest count of successes in `n` draws of probability `p` that a
    correct sampler stays within except with probability at most `false_failure` (half in
    each tail), from the exact binomial distribution."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    if p in (0.0, 1.0):
        return (0, 0) if p == 0.0 else (n, n)
    k = torch.arange(n + 1, dtype=torch.float64)
    logpmf = (torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
              + k * math.log(p) + (n - k) * math.log1p(-p))
    pmf = logpmf.exp()
    lower_tail = pmf.cumsum(0)  # P(X <= k)
    upper_tail = pmf.flip(0).cumsum(0).flip(0)  # P(X >= k)
    half = false_failure / 2
    lo = int((lower_tail <= half).sum())  # the counts below lo together have probability <= half
    hi = n - int((upper_tail <= half).sum())
    return lo, hi


def assert_rate(count: int, n: int, p: float, *, name: str, false_failure: float = FALSE_FAILURE,
                actual: Any = None, mistakes: Mistakes | None = None) -> None:
    """`count` successes in `n` draws must be plausible for probability `p`: within the exact
    binomial bounds a correct sampler leaves with probability at most `false_failure`."""
    lo, hi = binomial_bounds(n, p, false_failure)
    if not lo <= count <= hi:
        fail(f"{name}: {count} of {n} ({count / n:.4g}); expected about {p:.4g} of them, between {lo} and {hi}"
             f" (a correct solution lands outside with probability below {false_failure:g})", actual, mistakes)


def assert_counts(counts: Sequence[int], probs: Sequence[float], *, name: str, labels: Sequence[str] | None = None,
                  false_failure: float = FALSE_FAILURE, actual: Any = None, mistakes: Mistakes | None = None) -> None:
    """Observed `counts` per category must fit the probabilities `probs` by Pearson's
    chi-square test at level `false_failure`. Categories of probability 0 must be empty;
    every other expected count must be at least 5 (the test's approximation)."""
    counts_t = torch.as_tensor(list(counts), dtype=torch.float64)
    probs_t = torch.as_tensor(list(probs), dtype=torch.float64)
    labels = list(labels) if labels is not None else [str(i) for i in range(len(counts_t))]
    n = float(counts_t.sum())
    impossible = (probs_t == 0) & (counts_t > 0)
    if impossible.any():
        i = int(impossible.nonzero()[0])
        fail(f"{name}: {int(counts_t[i])} draws of {labels[i]}, which has probability 0", actual, mistakes)
    keep = probs_t > 0
    expected = probs_t[keep] / probs_t[keep].sum() * n
    if (expected < 5).any():
        raise ValueError(f"{name}: an expected count below 5 makes the chi-square test unreliable; draw more")
    stat = float(((counts_t[keep] - expected) ** 2 / expected).sum())
    dof = int(keep.sum()) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                            torch.tensor(stat / 2, dtype=torch.float64))) if dof > 0 else 1.0
    if p_value < false_failure:
        worst = int(((counts_t[keep] - expected).abs() / expected.sqrt()).argmax())
        label = [lab for lab, k in zip(labels, keep.tolist()) if k][worst]
        fail(f"{name}: the counts do not fit the expected probabilities (chi-square {stat:.4g} on {dof} degrees of"
             f" freedom, p = {p_value:.2g}); furthest off: {label}, {int(counts_t[keep][worst])} draws where"
             f" {float(expected[worst]):.4g} were expected (a correct solution fails this with probability"
             f" {false_failure:g})", actual, mistakes)


def assert_mean(samples: torch.Tensor, mean: float, std: float, *, name: str, false_failure: float = FALSE_FAILURE,
                actual: Any = None, mistakes: Mistakes | None = None) -> None:
    """The mean of `samples` (independent draws of a law with this `mean` and `std`) must lie
    within the normal-approximation bound that a correct sampler leaves with probability
    `false_failure`: for sample sizes where the central limit theorem holds (hundreds or more)."""
    n = samples.numel()
    z = float(torch.special.ndtri(torch.tensor(1.0 - false_failure / 2, dtype=torch.float64)))
    bound = z * std / math.sqrt(n)
    got = float(samples.double().mean())
    if abs(got - mean) > bound:
        fail(f"{name}: mean {got:.6g} over {n} samples; expected {mean:.6g} +- {bound:.2g} (a correct solution lands"
             f" outside with probability about {false_failure:g})", actual, mistakes)
