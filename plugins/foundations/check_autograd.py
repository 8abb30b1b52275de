"""Checks for foundations.autograd: the scalar `Value` engine against float64 torch autograd.

Each check writes its graphs as one straight-line program (see `probes.run_program`): the
solution process builds them with the student's `Value` and calls `backward()` in a single
round trip, and the judge replays the same program on float64 torch tensors (`_torch_run`)
for the expected `.data` and `.grad` of every node.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from grader import probes
from grader.compare import check
from grader.rng import Rng

# Both sides compute in float64; the slack covers a different but exact-in-math order of
# operations (a / b vs a * b**-1, summation order of accumulated gradients).
TOL = {"atol": 1e-9, "rtol": 1e-7}

# name -> (how it prints, what it computes), as in probes.run_program. In the r* forms b is a
# plain number on the left (`2 - v`), which makes Python call the reflected method.
_OPS: dict[str, tuple[str, Callable[..., float]]] = {
    "add": ("{a} + {b}", operator.add),
    "sub": ("{a} - {b}", operator.sub),
    "mul": ("{a} * {b}", operator.mul),
    "truediv": ("{a} / {b}", operator.truediv),
    "pow": ("{a} ** {b}", operator.pow),
    "radd": ("{b} + {a}", lambda a, b: b + a),
    "rsub": ("{b} - {a}", lambda a, b: b - a),
    "rmul": ("{b} * {a}", lambda a, b: b * a),
    "rtruediv": ("{b} / {a}", lambda a, b: b / a),
    "neg": ("-{a}", operator.neg),
}
_METHODS: dict[str, Callable[[Any], Any]] = {
    "exp": math.exp,
    "log": math.log,
    "tanh": math.tanh,
    "relu": lambda x: max(x, 0.0),
}


@dataclass(frozen=True)
class _Ref:
    """A node operand for `_Program.op`; a bare number is a plain-number constant."""

    reg: int


def node(reg: int) -> _Ref:
    return _Ref(reg)


@dataclass
class _Graph:
    nodes: list[int] = field(default_factory=list)  # registers of its Values, in creation order
    lines: list[str] = field(default_factory=list)  # the graph as Python, for messages


class _Program:
    """Graphs written as one `run_program` program, with each node's value, label and text.

    The forward values are tracked in the judge only to choose operations whose inputs are
    in their domain (log of a positive number, no division by ~0) and to keep magnitudes
    moderate; the expected results come from torch.
    """

    def __init__(self) -> None:
        self.program: list[list[Any]] = []
        self.value: list[float] = []
        self.label: list[str] = []
        self.text: list[str] = []
        # Node visits a naive recursive backward (no topological order) makes from here: it
        # grows exponentially with sharing, so graphs keep it small and neither a wrong
        # solution nor a known mistake replayed in the judge can run for long.
        self.paths: list[int] = []
        self.graphs: list[_Graph] = []

    def begin(self) -> None:
        self.graphs.append(_Graph())

    def _emit(self, ins: list[Any], value: float, label: str, text: str, paths: int) -> int:
        graph = self.graphs[-1]
        self.program.append(ins)
        self.value.append(value)
        self.label.append(label)
        self.text.append(text)
        self.paths.append(paths)
        graph.lines.append(f"{label} = {text}")
        graph.nodes.append(len(self.program) - 1)
        return len(self.program) - 1

    def undo(self) -> None:
        """Forget the node just added (an operation the generator decided against)."""
        graph = self.graphs[-1]
        for lst in (self.program, self.value, self.label, self.text, self.paths):
            lst.pop()
        graph.nodes.pop()
        graph.lines.pop()

    def leaf(self, x: float, label: str | None = None) -> int:
        x = float(x)
        label = label or f"x{len(self.graphs[-1].nodes)}"
        return self._emit(["call", "Value", [["val", x]]], x, label, f"Value({x!r})", 1)

    def op(self, name: str, a: int, b: _Ref | float | None = None) -> int:
        """`a <op> b` for a node `a` and a node `node(reg)`, a plain-number constant or None."""
        fmt, fn = _OPS[name]
        args, paths = [["reg", a]], 1 + self.paths[a]
        if isinstance(b, _Ref):
            args.append(["reg", b.reg])
            value = fn(self.value[a], self.value[b.reg])
            text = fmt.format(a=self.label[a], b=self.label[b.reg])
            paths += self.paths[b.reg]
        elif b is None:
            value, text = fn(self.value[a]), fmt.format(a=self.label[a])
        else:
            args.append(["val", b])
            value, text = fn(self.value[a], b), fmt.format(a=self.label[a], b=repr(b))
        return self._emit(["op", name, args], value, self._next_label(), text, paths)

    def method(self, name: str, a: int) -> int:
        value = _METHODS[name](self.value[a])
        text = f"{self.label[a]}.{name}()"
        paths = 1 + self.paths[a]
        return self._emit(["method", a, name, []], value, self._next_label(), text, paths)

    def _next_label(self) -> str:
        return f"v{len(self.graphs[-1].nodes)}"

    def backward(self, out: int) -> None:
        """End the current graph: `out.backward()`. Its register holds None."""
        self.graphs[-1].lines.append(f"{self.label[out]}.backward()")
        for lst, item in ((self.program, ["method", out, "backward", []]), (self.value, math.nan),
                          (self.label, ""), (self.text, ""), (self.paths, 0)):
            lst.append(item)

    def outputs(self) -> list[list[Any]]:
        """For every graph: .data of each node, then .grad of each node."""
        out: list[list[Any]] = []
        for g in self.graphs:
            out += [[r, "data"] for r in g.nodes] + [[r, "grad"] for r in g.nodes]
        return out

    def split(self, flat: list[float]) -> list[tuple[list[float], list[float]]]:
        """The flat outputs cut back into (data, grads) per graph."""
        result, i = [], 0
        for g in self.graphs:
            n = len(g.nodes)
            result.append((flat[i:i + n], flat[i + n:i + 2 * n]))
            i += 2 * n
        return result

    def listing(self, g: int) -> str:
        return "\n".join("    " + line for line in self.graphs[g].lines)

    def names(self, g: int) -> str:
        return "[" + ", ".join(self.label[r] for r in self.graphs[g].nodes) + "]"


_TORCH_OPS: dict[str, Callable[..., Any]] = {name: fn for name, (_, fn) in _OPS.items()}


def _torch_run(program: list[list[Any]], outputs: list[list[Any]]) -> list[float]:
    """The ground truth: `program` replayed with float64 torch tensors and torch autograd.

    A node's expected grad is torch's gradient of the output it was backpropagated from, or
    0.0 when it is not reachable from that output (its .grad never changes from 0.0).
    """
    regs: list[Any] = []

    def arg(a: list[Any]) -> Any:
        return regs[a[1]] if a[0] == "reg" else a[1]

    for ins in program:
        kind = ins[0]
        if kind == "call":  # Value(x): a leaf
            x = float(arg(ins[2][0]))
            regs.append(torch.tensor(x, dtype=torch.float64, requires_grad=True))
            continue
        if kind == "op":
            out = _TORCH_OPS[ins[1]](*[arg(a) for a in ins[2]])
        elif ins[2] == "backward":
            out = regs[ins[1]].backward()
        else:  # exp, log, tanh, relu
            out = getattr(regs[ins[1]], ins[2])()
        if isinstance(out, torch.Tensor):
            out.retain_grad()  # intermediate nodes' gradients are checked too
        regs.append(out)
    result = []
    for reg, attr in outputs:
        t = regs[reg]
        if attr == "data":
            result.append(float(t.detach()))
        else:
            result.append(0.0 if t.grad is None else float(t.grad))
    return result


def _numbers(values: Any) -> list[float]:
    """The student's .data/.grad values as floats; anything but a real number fails clearly."""
    out = []
    for v in values:
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            kind = getattr(v, "_grade_type", None) or type(v).__name__  # a remote object's type
            check(False, f"every .data and .grad must be a float, got a {kind}")
        out.append(float(v))
    return out


def _run(module: Any, p: _Program) -> list[tuple[list[float], list[float]]]:
    """Build and backpropagate every graph of `p` with `module.Value`, in one round trip."""
    return p.split(_numbers(probes.run_program(module, p.program, p.outputs())))


def _expected(p: _Program) -> list[tuple[list[float], list[float]]]:
    return p.split(_torch_run(p.program, p.outputs()))


def _tensor(xs: list[float]) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def _expect_graph(expect: Any, p: _Program, g: int, got: list, want: list) -> None:
    """Compare graph g's .data of every node, then its .grad of every node."""
    for part, what in ((0, "values (.data)"), (1, "gradients (.grad) after backward()")):
        expect.compare(_tensor(got[g][part]), _tensor(want[g][part]),
                       lambda m, part=part: _tensor(_run(m, p)[g][part]), **TOL,
                       name=f"{what} of the nodes {p.names(g)} of\n{p.listing(g)}\n")


def _expect_graphs(expect: Any, p: _Program) -> None:
    """Every graph of `p` against torch. The smallest graph that goes wrong is reported,
    forward values before gradients: the smallest failing expression points at the faulty
    operation."""
    got, want = _run(expect.solution, p), _expected(p)
    order = sorted(range(len(p.graphs)), key=lambda g: len(p.graphs[g].nodes))
    for part in (0, 1):
        for g in order:
            if not torch.allclose(_tensor(got[g][part]), _tensor(want[g][part]), **TOL):
                _expect_graph(expect, p, g, got, want)
    for g in order:  # NaN or anything allclose let through
        _expect_graph(expect, p, g, got, want)


def _pick(r: Rng, n: int) -> int:
    return int(r.np.integers(n))


def _uniform(r: Rng, lo: float, hi: float, digits: int = 4) -> float:
    """Rounded so that the graph listings in messages show the exact inputs."""
    return round(float(r.np.uniform(lo, hi)), digits)


def _signed(r: Rng, lo: float, hi: float, digits: int = 4) -> float:
    return _uniform(r, lo, hi, digits) * (1 if r.np.random() < 0.5 else -1)


# --- checks ---------------------------------------------------------------------------------


def test_forward_values(expect, rng):
    """Every operation's .data (plain numbers on either side), and a new Value's .grad of 0.0."""
    a_val, b_val = _uniform(rng, 0.3, 2.0), _signed(rng, 0.5, 2.0)
    p = _Program()
    p.begin()
    a, b = p.leaf(a_val, "a"), p.leaf(b_val, "b")
    for name, other in (("add", node(b)), ("sub", node(b)), ("mul", node(b)), ("truediv", node(b)),
                        ("add", 2.5), ("radd", 2.5), ("sub", 1.5), ("rsub", 1.5), ("mul", 3.0),
                        ("rmul", 3.0), ("truediv", 4.0), ("rtruediv", 4.0), ("pow", 3), ("pow", -2),
                        ("pow", 0.5), ("neg", None)):
        p.op(name, a, other)
    for name in ("exp", "log", "tanh", "relu"):
        p.method(name, a)
    p.method("relu", b)
    (data, grads), (want, _) = _run(expect.solution, p)[0], _expected(p)[0]
    for i, reg in enumerate(p.graphs[0].nodes[2:], start=2):
        expect.compare(data[i], want[i], lambda m, i=i: _run(m, p)[0][0][i], **TOL,
                       name=f"({p.text[reg]}).data with a = {a_val!r}, b = {b_val!r}")
    expect.compare(_tensor(data[:2]), _tensor([a_val, b_val]), lambda m: _tensor(_run(m, p)[0][0][:2]),
                   atol=0, rtol=0, name="[a.data, b.data]")
    expect.compare(_tensor(grads), torch.zeros(len(grads), dtype=torch.float64), lambda m: _tensor(_run(m, p)[0][1]),
                   atol=0, rtol=0, name=f".grad of the new Values {p.names(0)} before any backward() (must start at 0.0)")


def _a_pos(r: Rng) -> float:
    return _uniform(r, 0.4, 2.0)


def _a_any(r: Rng) -> float:
    return _signed(r, 0.4, 2.0)


# Single-operation graphs (and a few log/exp chains): the expression, how to build it from
# leaves a and b, and how to draw a (positive where the operation needs it).
_SINGLE: list[tuple[str, Callable[[_Program, int, int], int], Callable[[Rng], float]]] = [
    ("a + b", lambda p, a, b: p.op("add", a, node(b)), _a_any),
    ("a - b", lambda p, a, b: p.op("sub", a, node(b)), _a_any),
    ("a * b", lambda p, a, b: p.op("mul", a, node(b)), _a_any),
    ("a / b", lambda p, a, b: p.op("truediv", a, node(b)), _a_any),
    ("a + 2.5", lambda p, a, b: p.op("add", a, 2.5), _a_any),
    ("2.5 + a", lambda p, a, b: p.op("radd", a, 2.5), _a_any),
    ("a - 1.5", lambda p, a, b: p.op("sub", a, 1.5), _a_any),
    ("1.5 - a", lambda p, a, b: p.op("rsub", a, 1.5), _a_any),
    ("3.0 * a", lambda p, a, b: p.op("rmul", a, 3.0), _a_any),
    ("a / 4.0", lambda p, a, b: p.op("truediv", a, 4.0), _a_any),
    ("4.0 / a", lambda p, a, b: p.op("rtruediv", a, 4.0), _a_any),
    ("-a", lambda p, a, b: p.op("neg", a), _a_any),
    ("a ** 2", lambda p, a, b: p.op("pow", a, 2), _a_any),
    ("a ** 3", lambda p, a, b: p.op("pow", a, 3), _a_any),
    ("a ** -1", lambda p, a, b: p.op("pow", a, -1), _a_any),
    ("a ** -2", lambda p, a, b: p.op("pow", a, -2), _a_any),
    ("a ** 0.5", lambda p, a, b: p.op("pow", a, 0.5), _a_pos),
    ("a ** -0.5", lambda p, a, b: p.op("pow", a, -0.5), _a_pos),
    ("a ** 1.5", lambda p, a, b: p.op("pow", a, 1.5), _a_pos),
    ("a.exp()", lambda p, a, b: p.method("exp", a), _a_any),
    ("a.log()", lambda p, a, b: p.method("log", a), _a_pos),
    ("a.tanh()", lambda p, a, b: p.method("tanh", a), _a_any),
    ("a.relu()", lambda p, a, b: p.method("relu", a), _a_pos),
    ("(-a).relu()", lambda p, a, b: p.method("relu", p.op("neg", a)), _a_pos),
    ("a.exp().log()", lambda p, a, b: p.method("log", p.method("exp", a)), _a_any),
    ("a.log().exp()", lambda p, a, b: p.method("exp", p.method("log", a)), _a_pos),
    ("(a * b).tanh().exp().log()",
     lambda p, a, b: p.method("log", p.method("exp", p.method("tanh", p.op("mul", a, node(b))))),
     _a_any),
    ("a * a", lambda p, a, b: p.op("mul", a, node(a)), _a_any),
    ("a + a", lambda p, a, b: p.op("add", a, node(a)), _a_any),
    ("a / a", lambda p, a, b: p.op("truediv", a, node(a)), _a_any),
]


@pytest.mark.points(3)
def test_gradient_of_each_operation(expect, rng):
    """Each operation alone and a few log/exp chains: a.grad, b.grad (0 if unused), out.grad = 1."""
    p = _Program()
    for _, build, draw_a in _SINGLE:
        p.begin()
        a, b = p.leaf(draw_a(rng), "a"), p.leaf(_signed(rng, 0.4, 2.0), "b")
        p.backward(build(p, a, b))
    got, want = _run(expect.solution, p), _expected(p)
    for g, (expr, _, _) in enumerate(_SINGLE):
        picks = (0, 1, len(p.graphs[g].nodes) - 1)  # a, b and the output

        def grads(result: list, g: int = g, picks: tuple = picks) -> torch.Tensor:
            return _tensor([result[g][1][i] for i in picks])

        a_val, b_val = (p.value[p.graphs[g].nodes[i]] for i in (0, 1))
        expect.compare(grads(got), grads(want), lambda m, grads=grads: grads(_run(m, p)), **TOL,
                       name=f"[a.grad, b.grad, out.grad] after out.backward() for out = {expr}"
                            f" at a = {a_val!r}, b = {b_val!r}")


def test_relu_subgradient_at_zero(expect, rng):
    """relu at exactly 0 has derivative 0, as in torch, where its input depends on leaves."""
    x_val, y_val = _signed(rng, 0.5, 2.0), _signed(rng, 0.5, 2.0)
    p = _Program()
    p.begin()
    p.backward(p.method("relu", p.leaf(0.0, "z")))  # Value(0.0).relu()
    p.begin()
    x = p.leaf(x_val, "x")
    p.backward(p.method("relu", p.op("sub", x, x_val)))  # (x - x.data).relu(): input exactly 0
    p.begin()
    x, zero = p.leaf(x_val, "x"), p.leaf(0.0, "y")
    # relu(x * 0): y.grad would pick up x if relu'(0) were 1
    h = p.method("relu", p.op("mul", x, node(zero)))
    p.backward(p.op("add", h, node(p.op("mul", x, y_val))))
    _expect_graphs(expect, p)


@pytest.mark.points(2)
def test_shared_nodes_accumulate(expect, rng):
    """A node used many times gets the sum of all its uses' contributions (diamonds, fan-out)."""
    p = _Program()
    # y = x * w feeds a dozen terms, some of them using y twice.
    p.begin()
    x, w = p.leaf(_signed(rng, 0.3, 1.0), "x"), p.leaf(_signed(rng, 0.3, 1.0), "w")
    y = p.op("mul", x, node(w))
    terms = [y, p.op("mul", y, node(y)), p.method("tanh", y), p.op("rmul", y, 3.0),
             p.method("exp", y), p.op("pow", y, 2), p.op("sub", y, 1.0), p.op("truediv", y, 2.0),
             p.op("add", y, node(y)), p.op("rsub", y, 0.5),
             p.op("mul", p.method("tanh", y), node(y)), p.op("neg", y)]
    out = terms[0]
    for t in terms[1:]:
        out = p.op("add", out, node(t))
    p.backward(out)
    # A diamond whose branches meet again, several levels deep.
    p.begin()
    x = p.leaf(_signed(rng, 0.3, 1.5), "x")
    b = p.method("tanh", x)
    c, d = p.op("mul", b, node(b)), p.method("exp", b)
    e = p.op("add", c, node(d))
    f = p.op("mul", e, node(b))
    g2 = p.op("truediv", f, node(p.op("add", d, 1.0)))
    p.backward(p.op("add", g2, node(p.op("sub", e, node(c)))))
    # One leaf used 40 times along a chain, and an intermediate node used 10 times.
    p.begin()
    x, s = p.leaf(_signed(rng, 0.5, 1.5), "x"), p.leaf(_signed(rng, 0.5, 1.5), "s")
    acc = s
    for i in range(40):
        acc = p.op("add", acc, node(x)) if i % 2 else p.op("sub", acc, node(x))
        acc = p.op("mul", acc, 0.9)
    m = p.method("tanh", p.op("mul", x, node(s)))
    for _ in range(10):
        acc = p.op("add", acc, node(m))
    p.backward(acc)
    _expect_graphs(expect, p)


def _random_graph(p: _Program, r: Rng, n_leaves: int, n_ops: int, from_middle: bool = False) -> None:
    """A random expression DAG: operands mostly the newest nodes (depth) but also older ones
    (sharing), every operation kept where it is defined and magnitudes stay moderate.
    Backpropagated from its last node, or with `from_middle` from an operation in its first
    half, so the nodes built after it are not reachable from the output."""
    p.begin()
    regs = []
    for _ in range(n_leaves):
        # now and then a leaf of exactly 0 (relu's kink, 0 ** 2, 0 * ...)
        regs.append(p.leaf(0.0 if r.np.random() < 0.1 else _signed(r, 0.2, 2.0)))
    while len(regs) < n_leaves + n_ops:
        if r.np.random() < 0.7:
            a = regs[-1 - min(_pick(r, 3), len(regs) - 1)]
        else:
            a = regs[_pick(r, len(regs))]
        b = regs[_pick(r, len(regs))]
        va, vb = p.value[a], p.value[b]
        choice = _pick(r, 15)
        if choice < 4:
            name = ("add", "sub", "mul", "truediv")[choice]
            if (name == "truediv" and abs(vb) < 0.3) or p.paths[a] + p.paths[b] > 400:
                continue
            new = p.op(name, a, node(b))
        elif choice < 8:
            name = ("radd", "rsub", "rmul", "rtruediv")[choice - 4] if r.np.random() < 0.5 else \
                ("add", "sub", "mul", "truediv")[choice - 4]
            c = _signed(r, 0.5, 2.0, 2)
            if name == "rtruediv" and abs(va) < 0.3:
                continue
            new = p.op(name, a, c)
        elif choice < 10:
            exponent = (2, 3, -1, -2, 0.5, 1.5, -0.5)[_pick(r, 7)]
            if (exponent < 0 and abs(va) < 0.3) or (isinstance(exponent, float) and va < 0.2):
                continue
            new = p.op("pow", a, exponent)
        elif choice == 10:
            new = p.op("neg", a)
        else:
            name = ("exp", "log", "tanh", "relu")[choice - 11]
            if (name == "exp" and va > 3) or (name == "log" and va < 0.1):
                continue
            # relu's kink only where every implementation gets exactly 0 (a leaf of 0.0): an
            # input computed as ~1e-16 instead of 0 (x / x as x * x**-1) flips its derivative.
            if name == "relu" and abs(va) < 1e-6 and not (va == 0 and p.program[a][0] == "call"):
                continue
            new = p.method(name, a)
        if not abs(p.value[new]) < 30:  # too big: drop this node and try another operation
            p.undo()
            continue
        regs.append(new)
    p.backward(regs[n_leaves + _pick(r, (n_ops + 1) // 2)] if from_middle else regs[-1])


@pytest.mark.points(3)
def test_random_graphs_match_torch(expect, rng):
    """40 random expression graphs (1-30 operations): .data and .grad of every node vs torch."""
    p = _Program()
    for k in range(40):
        r = rng.child("graph", k)
        _random_graph(p, r, n_leaves=1 + _pick(r, 4), n_ops=1 + (k * 29) // 39)
    _expect_graphs(expect, p)


def test_deep_chain(expect, rng):
    """A chain of 2500 nodes (deeper than Python's recursion limit) with a leaf shared along it."""
    p = _Program()
    p.begin()
    x, w = p.leaf(_signed(rng, 0.5, 1.5), "x"), p.leaf(_signed(rng, 0.2, 0.5), "w")
    # g tracks d v / d x and is steered to stay within [1/4, 4]: a chain whose gradient
    # explodes would amplify last-bit differences (math.tanh vs torch.tanh) into noise.
    v, g, steps = x, 1.0, 0
    while len(p.graphs[0].nodes) < 2500:
        va, choice = p.value[v], _pick(rng, 5)
        if abs(va) > 3:
            v = p.op("sub", v, round(va, 1))  # back near 0; the gradient is unchanged
        elif not 0.25 <= abs(g) <= 4:
            c = 0.5 if abs(g) > 4 else 2.0
            v, g = p.op("mul", v, c), g * c
        elif choice == 0:
            c = _uniform(rng, 0.8, 1.25, 2)
            v, g = p.op("mul", v, c), g * c
        elif choice == 1:
            v = p.op("add", v, node(p.op("mul", w, _signed(rng, 0.5, 1.0, 2))))  # w is reused
        elif choice == 2:
            v = p.method("log", p.method("exp", v))
        elif choice == 3:
            v, g = p.op("rmul", p.method("tanh", v), 2.0), g * 2 * (1 - math.tanh(va) ** 2)
        else:
            c = _signed(rng, 0.8, 1.25, 2)
            v, g = p.op("truediv", v, c), g / c
        steps += 1
    p.backward(v)
    picks = [0, 1, len(p.graphs[0].nodes) - 1]  # x, w and the output

    def summary(result: list[tuple[list[float], list[float]]]) -> torch.Tensor:
        data, grads = result[0]
        return _tensor([data[picks[2]]] + [grads[i] for i in picks])

    expect(lambda s: summary(_run(s, p)), truth=summary(_expected(p)), **TOL,
           name=f"[out.data, x.grad, w.grad, out.grad] for a chain of {steps} steps "
                f"({len(p.graphs[0].nodes) - 2} operations) from a leaf x, reusing a leaf w")


@pytest.mark.hidden
def test_hidden_backward_from_a_middle_node(expect, rng):
    """Graphs the public checks do not build: 5 to 9 leaves, and backward() called on an
    operation in the first half of the graph, so the nodes built after it (which use it) are
    not reachable from the output and must keep .grad 0.0, while every node feeding it gets
    its gradient."""
    p = _Program()
    for k in range(12):
        r = rng.child("graph", k)
        _random_graph(p, r, n_leaves=5 + _pick(r, 5), n_ops=12 + _pick(r, 19), from_middle=True)
    _expect_graphs(expect, p)
