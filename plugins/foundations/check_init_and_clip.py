"""Checks for foundations.init_and_clip.

Fans and gains are compared exactly with torch.nn.init; clip_grad_norm_ with
torch.nn.utils.clip_grad_norm_. The initialisers are random and a torch.Generator cannot
cross to the student's process, so they run with generator=None and are judged by their
statistics on large tensors: support, mean, std (tolerances from the sample size) and a
Kolmogorov-Smirnov distance to the exact distribution. A failing sample is matched against
samples from the known mistakes with a two-sample KS test to name the mistake. That they
draw from their `generator` argument alone is `expect.seeded`'s to prove: its probe makes
the generators in the student's process.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

from grader import recording
from grader.compare import CheckFailure, Mistakes, assert_equal, check, raises
from grader.errors import SolutionError
from grader.probes import run_program, with_parameters

# Moments must lie within SIGMAS standard errors; a KS distance above KS_C / sqrt(n) has
# probability about 1e-7 for a correct sampler (Kolmogorov: P(D > c / sqrt(n)) ~ 2 exp(-2 c^2)).
SIGMAS = 6.0
KS_C = math.sqrt(-0.5 * math.log(1e-7 / 2))


def _fmt(v: float) -> str:
    return f"{v:.5g}"


@dataclass
class Law:
    """The distribution an initialiser must draw from."""

    description: str
    cdf: Callable[[torch.Tensor], torch.Tensor]
    mean: float
    std: float
    kurtosis: float  # E[(x - mean)^4] / std^4: sets the standard error of the sample std
    lo: float = -math.inf
    hi: float = math.inf
    no_mass_at_bounds: bool = False


def _phi_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.special.erf(z / math.sqrt(2.0)))


def uniform_law(bound: float) -> Law:
    return Law(
        f"U(-{_fmt(bound)}, {_fmt(bound)})",
        lambda x: ((x + bound) / (2 * bound)).clamp(0.0, 1.0),
        0.0,
        bound / math.sqrt(3.0),
        1.8,
        -bound,
        bound,
    )


def normal_law(std: float) -> Law:
    return Law(f"N(0, {_fmt(std)}**2)", lambda x: _phi_cdf(x / std), 0.0, std, 3.0)


def trunc_normal_law(mean: float, std: float, a: float, b: float) -> Law:
    alpha, beta = (a - mean) / std, (b - mean) / std
    cdf_alpha, cdf_beta = (float(_phi_cdf(torch.tensor(v, dtype=torch.float64))) for v in (alpha, beta))
    mass = cdf_beta - cdf_alpha
    # Moments by quadrature of the standard normal density restricted to [alpha, beta].
    z = torch.linspace(alpha, beta, 20_001, dtype=torch.float64)
    w = torch.exp(-0.5 * z**2)
    w = w / torch.trapezoid(w, z)
    m1 = float(torch.trapezoid(w * z, z))
    var = float(torch.trapezoid(w * (z - m1) ** 2, z))
    m4 = float(torch.trapezoid(w * (z - m1) ** 4, z))
    return Law(
        f"N({_fmt(mean)}, {_fmt(std)}**2) truncated to [{_fmt(a)}, {_fmt(b)}]",
        lambda x: ((_phi_cdf((x - mean) / std) - cdf_alpha) / mass).clamp(0.0, 1.0),
        mean + std * m1,
        std * math.sqrt(var),
        m4 / var**2,
        a,
        b,
        no_mass_at_bounds=True,
    )


def _ks_distance(sample: torch.Tensor, cdf: Callable[[torch.Tensor], torch.Tensor]) -> float:
    x = sample.reshape(-1).to(torch.float64).sort().values
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def _ks_two_sample(x: torch.Tensor, y: torch.Tensor) -> float:
    x = x.reshape(-1).to(torch.float64).sort().values
    y = y.reshape(-1).to(torch.float64).sort().values
    both = torch.cat([x, y])
    fx = torch.searchsorted(x, both, right=True) / x.numel()
    fy = torch.searchsorted(y, both, right=True) / y.numel()
    return float((fx - fy).abs().max())


def _law_problem(sample: torch.Tensor, law: Law) -> str | None:
    """Why `sample` does not look like n draws from `law`, or None if it does."""
    x = sample.reshape(-1).to(torch.float64)
    n = x.numel()
    if not torch.isfinite(x).all():
        return f"{int((~torch.isfinite(x)).sum())} NaN/Inf values"
    lo, hi = float(x.min()), float(x.max())
    got = f"got mean {_fmt(float(x.mean()))}, std {_fmt(float(x.std()))}, min {_fmt(lo)}, max {_fmt(hi)}"
    # The bounds as the tensor's dtype stores them (float32(-0.4) is a hair below -0.4).
    lo_ok = float(torch.tensor(law.lo, dtype=sample.dtype)) if math.isfinite(law.lo) else -math.inf
    hi_ok = float(torch.tensor(law.hi, dtype=sample.dtype)) if math.isfinite(law.hi) else math.inf
    if lo < lo_ok or hi > hi_ok:
        return f"values outside [{_fmt(law.lo)}, {_fmt(law.hi)}]: {got}"
    if law.no_mass_at_bounds:
        at_bounds = int(((x == lo_ok) | (x == hi_ok)).sum())
        if at_bounds > 2 + n * 1e-4:
            return (
                f"{at_bounds} of {n} values sit exactly on a bound: probability mass piles up at"
                f" a or b, as when normal draws are clamped instead of truncated ({got})"
            )
    mean_tol = SIGMAS * law.std / math.sqrt(n)
    std_tol = SIGMAS * law.std * math.sqrt((law.kurtosis - 1.0) / (4.0 * n))
    mean, std = float(x.mean()), float(x.std())
    if abs(mean - law.mean) > mean_tol or abs(std - law.std) > std_tol:
        return (
            f"expected mean {_fmt(law.mean)} (+-{mean_tol:.2g}) and std {_fmt(law.std)}"
            f" (+-{std_tol:.2g} for {n} samples); {got}"
        )
    d, d_max = _ks_distance(x, law.cdf), KS_C / math.sqrt(n)
    if d > d_max:
        return (
            f"the values do not follow the distribution: Kolmogorov-Smirnov distance"
            f" {d:.3g} > {d_max:.2g} (allowed for {n} samples) although mean and std are close"
        )
    return None


def assert_law(sample: object, law: Law, *, shape: tuple[int, ...], dtype: torch.dtype, name: str,
               mistakes: Mistakes | None = None) -> None:
    """Fail unless `sample` is a tensor of `shape` and `dtype` drawn from `law`.

    On failure, a known mistake whose own output is wrong for this call and whose sample is
    statistically indistinguishable from the student's (two-sample KS) is named.
    """
    if not isinstance(sample, torch.Tensor):
        raise CheckFailure(f"{name}: expected a torch.Tensor (the filled tensor), got {type(sample).__name__}")
    if tuple(sample.shape) != shape or sample.dtype != dtype:
        raise CheckFailure(
            f"{name}: expected a {dtype} tensor of shape {shape} (the input, filled in place),"
            f" got {sample.dtype} of shape {tuple(sample.shape)}"
        )
    problem = _law_problem(sample, law)
    if problem is None:
        if mistakes is not None:  # a mistake named later must draw from this law here too
            recording.compared(mistakes.call, lambda output: isinstance(output, torch.Tensor)
                               and tuple(output.shape) == shape and _law_problem(output, law) is None)
        return
    message = f"{name}: expected draws from {law.description}; {problem}"
    matches = []
    for mutant, (misconception, module) in mistakes.modules().items() if mistakes is not None else []:
        ok, output = mistakes.output(module)
        if not ok:
            continue
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != shape:
            continue
        if _law_problem(output, law) is None:  # this mistake does not change this call
            continue
        if _ks_two_sample(sample, output) <= KS_C * math.sqrt(2.0 / sample.numel()) and mistakes.consistent(module):
            matches.append((mutant, misconception))
    if len(matches) == 1:
        raise CheckFailure(f"{message}\nThis is the distribution a known mistake gives: {matches[0][1]}",
                           mistake=matches[0][0])
    if matches:
        # Different mistakes can give the same distribution for every call the check made:
        # name them all.
        either = "\n".join(f"- {misconception}" for _, misconception in matches)
        raise CheckFailure(f"{message}\nThis is the distribution each of these known mistakes gives:\n{either}",
                           mistake=", ".join(name for name, _ in matches))
    raise CheckFailure(message)


def _fill(fn: Callable[..., torch.Tensor], shape: tuple[int, ...], kwargs: dict[str, object]) -> torch.Tensor:
    return fn(torch.zeros(shape), **kwargs)


def _call(fn_name: str, shape: tuple[int, ...], kwargs: dict[str, object]) -> str:
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return f"{fn_name}(torch.zeros{shape}{args})"


def _expect_law(expect, fn_name: str, shape: tuple[int, ...], kwargs: dict[str, object], law: Law,
                detail: str = "") -> None:
    """`fn_name` filling a float32 torch.zeros(shape) must draw from `law`; a known mistake
    drawing from the same distribution is named."""
    def fill(m):
        return _fill(getattr(m, fn_name), shape, kwargs)

    assert_law(fill(expect.solution), law, shape=shape, dtype=torch.float32,
               name=_call(fn_name, shape, kwargs) + detail, mistakes=expect.mistakes(fill))


@contextlib.contextmanager
def _calling(description: str, hint: str = "") -> Iterator[None]:
    """Name the student's call in an error it raises (isolated mode shows only the probe)."""
    try:
        yield
    except SolutionError as e:
        message = e.message + (f" ({hint})" if hint and not e.not_implemented else "")
        raise SolutionError(e.exc_type, message, e.traceback, description) from None


FAN_SHAPES = [(256, 512), (3, 5), (1, 1), (64, 32, 3, 3), (8, 4, 5), (2, 3, 4, 5, 6), (7, 1, 1, 1)]


@pytest.mark.points(2)
def test_fans_match_torch(expect):
    for shape in FAN_SHAPES:
        w = torch.zeros(shape)
        expect(lambda s, w=w: s.calculate_fan_in_and_fan_out(w),
               truth=tuple(int(v) for v in torch.nn.init._calculate_fan_in_and_fan_out(w)),
               name=f"calculate_fan_in_and_fan_out of a weight of shape {shape} (fan_in, fan_out)")
    check(raises(lambda: expect.solution.calculate_fan_in_and_fan_out(torch.zeros(5))),
          "calculate_fan_in_and_fan_out of a 1-D tensor of shape (5,) must raise ValueError")


GAIN_CASES = [
    ("linear", None), ("conv2d", None), ("conv_transpose1d", None), ("sigmoid", None),
    ("tanh", None), ("relu", None), ("relu", 0.3), ("selu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5.0)), ("leaky_relu", 0),
]


@pytest.mark.points(2)
def test_gain_matches_torch(expect):
    for nonlinearity, param in GAIN_CASES:
        expect(lambda s, f=nonlinearity, p=param: s.calculate_gain(f, p),
               truth=float(torch.nn.init.calculate_gain(nonlinearity, param)), atol=0.0, rtol=1e-9,
               name=f"calculate_gain({nonlinearity!r}, {param!r})")
    check(raises(lambda: expect.solution.calculate_gain("swish")),
          "calculate_gain('swish') must raise ValueError (unsupported nonlinearity)")


XAVIER_CASES = [((256, 512), {}), ((512, 96), {"gain": 5.0 / 3.0}), ((64, 32, 3, 3), {})]


@pytest.mark.points(2)
def test_xavier_uniform_statistics(expect):
    for shape, kwargs in XAVIER_CASES:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
        bound = kwargs.get("gain", 1.0) * math.sqrt(6.0 / (fan_in + fan_out))
        _expect_law(expect, "xavier_uniform_", shape, kwargs, uniform_law(bound),
                    f" (fan_in={fan_in}, fan_out={fan_out})")


KAIMING_CASES = [
    ((256, 512), {}),
    ((384, 128), {"mode": "fan_out", "nonlinearity": "relu"}),
    ((320, 480), {"a": math.sqrt(5.0)}),
    ((64, 32, 3, 3), {"mode": "fan_out", "nonlinearity": "tanh"}),
]


@pytest.mark.points(2)
def test_kaiming_normal_statistics(expect):
    for shape, kwargs in KAIMING_CASES:
        w = torch.zeros(shape)
        fan = torch.nn.init._calculate_correct_fan(w, kwargs.get("mode", "fan_in"))
        gain = torch.nn.init.calculate_gain(kwargs.get("nonlinearity", "leaky_relu"), kwargs.get("a", 0.0))
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(w)
        _expect_law(expect, "kaiming_normal_", shape, kwargs, normal_law(gain / math.sqrt(fan)),
                    f" (fan_in={fan_in}, fan_out={fan_out})")
    check(raises(lambda: expect.solution.kaiming_normal_(torch.zeros(4, 6), mode="fan_avg")),
          "kaiming_normal_(torch.zeros(4, 6), mode='fan_avg') must raise ValueError (mode is 'fan_in' or 'fan_out')")


TRUNC_CASES = [
    ((256, 512), {}),
    ((200, 300), {"mean": 0.2, "std": 0.5, "a": -0.4, "b": 1.0}),
    ((32, 64, 48), {"std": 0.02}),
    ((60000,), {"mean": 0.0, "std": 1.0, "a": 1.0, "b": 3.0}),
]


@pytest.mark.points(2)
def test_trunc_normal_statistics(expect):
    for shape, kwargs in TRUNC_CASES:
        params = {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0, **kwargs}
        law = trunc_normal_law(params["mean"], params["std"], params["a"], params["b"])
        _expect_law(expect, "trunc_normal_", shape, kwargs, law)


INPLACE_CASES = [
    ("xavier_uniform_", (1, 1), torch.float32, {"gain": 1.0}, uniform_law(math.sqrt(3.0))),
    ("xavier_uniform_", (24, 40), torch.float64, {}, uniform_law(math.sqrt(6.0 / 64))),
    ("kaiming_normal_", (7, 1, 1), torch.float32, {"nonlinearity": "relu"}, None),
    ("kaiming_normal_", (40, 24), torch.float64, {"mode": "fan_out"}, None),
    ("trunc_normal_", (1,), torch.float32, {"a": -0.5, "b": 0.5}, trunc_normal_law(0.0, 1.0, -0.5, 0.5)),
    ("trunc_normal_", (3, 5, 7), torch.float64, {"mean": 1.0, "std": 2.0, "a": 0.0, "b": 3.0},
     trunc_normal_law(1.0, 2.0, 0.0, 3.0)),
]


@pytest.mark.points(2)
def test_init_fills_in_place_and_returns_it(expect):
    """Each initialiser fills a leaf tensor that requires grad (a Parameter) and returns it."""
    for fn_name, shape, dtype, kwargs, law in INPLACE_CASES:
        program = [
            ["const", torch.zeros(shape, dtype=dtype)],
            ["method", 0, "requires_grad_", [["val", True]]],
            ["call", fn_name, [["reg", 0]], {k: ["val", v] for k, v in kwargs.items()}],
        ]
        name = f"{fn_name}(w, {kwargs}) with w = torch.zeros{shape}, dtype {dtype}, requires_grad=True"
        with _calling(name, "an nn.Parameter must be filled under torch.no_grad()"):
            filled, returned = run_program(expect.solution, program, [0, 2])
        check(isinstance(returned, torch.Tensor),
              f"{name}: must return the filled tensor, got {type(returned).__name__}")
        # Same storage: the very tensor passed in was filled and returned, not a new one.
        pointers = program + [["method", 0, "data_ptr", []], ["method", 2, "data_ptr", []]]
        ptr_in, ptr_out = run_program(expect.solution, pointers, [3, 4])
        check(ptr_in == ptr_out, f"{name}: must return the tensor it was given (filled in place), not a new one")
        assert_equal(filled, returned, name=f"{name}: w after the call vs the returned tensor")
        check(bool((filled != 0).any()), f"{name}: the tensor is still all zeros after the call")
        if law is not None:
            lo, hi = float(filled.detach().min()), float(filled.detach().max())
            lo_ok, hi_ok = (float(torch.tensor(v, dtype=dtype)) for v in (law.lo, law.hi))
            check(lo_ok <= lo and hi <= hi_ok,
                  f"{name}: values must lie in [{_fmt(law.lo)}, {_fmt(law.hi)}], got min {lo}, max {hi}")


@pytest.mark.points(2)
def test_init_draws_only_from_its_generator(expect):
    """Each initialiser given `generator=g` draws from g alone: the same seed fills the same
    values, another seed other values, and the global random states stay as they were (a
    training script seeds its own generator for the weights and must get them back)."""
    expect.seeded(lambda s: s.xavier_uniform_, [torch.zeros(48, 40)], {"gain": 1.5},
                  name="xavier_uniform_(torch.zeros(48, 40), gain=1.5, generator=g)")
    expect.seeded(lambda s: s.kaiming_normal_, [torch.zeros(32, 16, 3)], {"mode": "fan_out", "nonlinearity": "relu"},
                  name="kaiming_normal_(torch.zeros(32, 16, 3), mode='fan_out', nonlinearity='relu', generator=g)")
    expect.seeded(lambda s: s.trunc_normal_, [torch.zeros(50, 30, dtype=torch.float64)], {"std": 0.5, "a": -1.0},
                  name="trunc_normal_(torch.zeros(50, 30, dtype=torch.float64), std=0.5, a=-1.0, generator=g)")


def _clip_case(rng, scale: float, shapes: list[tuple[int, ...]], dtype: torch.dtype = torch.float32):
    values = [rng.randn(*s, dtype=dtype) for s in shapes]
    grads = [rng.randn(*s, dtype=dtype, scale=scale) for s in shapes]
    return values, grads


def _expect_clip(expect, values, grads, max_norm, norm_type, label):
    kwargs = {"norm_type": norm_type}
    call = f"clip_grad_norm_({label}, max_norm={max_norm:g}, norm_type={norm_type})"

    def clip(fn):
        return with_parameters(fn, values, grads, [max_norm], kwargs)

    with _calling(call):
        got = clip(expect.solution.clip_grad_norm_)
    want = clip(torch.nn.utils.clip_grad_norm_)
    expect.compare(got["result"], want["result"], lambda m: clip(m.clip_grad_norm_)["result"], atol=1e-12, rtol=2e-6,
                   name=f"the total norm returned by {call}")
    for i, (g_got, g_want) in enumerate(zip(got["grads"], want["grads"], strict=True)):
        if g_want is None:
            check(g_got is None, f"{call}: parameter {i} had no gradient; its .grad must stay None")
            continue
        expect.compare(g_got, g_want, lambda m, i=i: clip(m.clip_grad_norm_)["grads"][i], atol=1e-12, rtol=2e-6,
                       name=f"the gradient of parameter {i} after {call}")
    expect.compare(got["values"], want["values"], lambda m: clip(m.clip_grad_norm_)["values"],
                   name=f"the parameter values after {call} (must not change)")


@pytest.mark.points(3)
def test_clip_grad_norm_matches_torch(expect, rng):
    shapes = [(7, 13), (5,), (3, 4, 5), (11,)]
    for norm_type in (2.0, 1.0, 3.0, math.inf):
        values, grads = _clip_case(rng.child(norm_type), 1.0, shapes)
        # The largest |g| is negative, so the inf-norm needs abs().
        grads[2][1, 2, 3] = -2.5 * float(max(g.abs().max() for g in grads))
        _expect_clip(expect, values, grads, 0.5, norm_type, f"4 parameters of shapes {shapes}")
    values, grads = _clip_case(rng.child("f64"), 2.0, [(9, 6), (6,)], torch.float64)
    _expect_clip(expect, values, grads, 1.0, 2.0, "float64 parameters of shapes [(9, 6), (6,)]")


@pytest.mark.points(2)
def test_clip_grad_norm_below_max_norm_changes_nothing(expect, rng):
    shapes = [(6, 10), (10,)]
    for norm_type in (2.0, math.inf):
        values, grads = _clip_case(rng.child(norm_type), 0.1, shapes)
        total = float(torch.nn.utils.get_total_norm(grads, norm_type))
        max_norm = 3.0 * total
        # torch leaves the gradients unchanged here, so _expect_clip demands exactly that.
        _expect_clip(expect, values, grads, max_norm, norm_type,
                     f"parameters of shapes {shapes} whose total norm {total:.4g} is below max_norm")


@pytest.mark.points(2)
def test_clip_grad_norm_edge_cases(expect, rng):
    # A parameter without a gradient is skipped, not counted as zeros nor crashed on.
    values, grads = _clip_case(rng.child("none"), 1.0, [(4, 3), (8,), (2, 2)])
    grads[1] = None
    _expect_clip(expect, values, grads, 0.7, 2.0, "3 parameters, the second with .grad None")
    _expect_clip(expect, values, grads, 0.7, math.inf, "3 parameters, the second with .grad None")
    # A single 0-d parameter.
    _expect_clip(expect, [torch.tensor(1.5)], [torch.tensor(-4.0)], 1.0, 2.0,
                 "one 0-d parameter with grad -4")
    # Tiny gradients: here the 1e-6 in max_norm / (total_norm + 1e-6) changes the result.
    values, grads = _clip_case(rng.child("tiny"), 1e-5, [(10, 10)])
    _expect_clip(expect, values, grads, 1e-5, 2.0, "one (10, 10) parameter with gradients ~1e-5")
    # No gradients at all.
    _expect_clip(expect, [rng.randn(3)], [None], 1.0, 2.0, "one parameter with .grad None")


@pytest.mark.hidden
def test_hidden_clip_fractional_norms_float64(expect, rng):
    """clip_grad_norm_ where the public checks do not go: norm_type 1.5 and 4 (not 1, 2, 3 or
    inf) over float64 parameters of shapes (), (1,), (2, 3, 5, 7) and (13,), the (1,) one
    without a gradient, and max_norm a random fraction of the total norm, so the gradients
    are always scaled."""
    shapes = [(), (1,), (2, 3, 5, 7), (13,)]

    def draw(r, scale):
        return [r.randn(max(1, math.prod(s)), dtype=torch.float64, scale=scale).reshape(s) for s in shapes]

    for norm_type in (1.5, 4.0):
        r = rng.child(norm_type)
        values, grads = draw(r, 1.0), draw(r, 3.0)
        grads[1] = None
        total = float(torch.nn.utils.get_total_norm([g for g in grads if g is not None], norm_type))
        max_norm = (0.1 + 0.8 * float(r.rand(1))) * total
        _expect_clip(expect, values, grads, max_norm, norm_type,
                     f"float64 parameters of shapes {shapes}, the second with .grad None")
