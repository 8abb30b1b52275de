"""A scalar reverse-mode autograd engine: `Value` nodes and `backward()`."""

from __future__ import annotations

import math


def _lift(x: Value | float) -> Value:
    """A plain number becomes a constant leaf; a Value is used as is."""
    return x if isinstance(x, Value) else Value(x)


def _node(data: float, *inputs: tuple[Value, float]) -> Value:
    """A new node computed from `inputs`, given as (input, d new / d input) pairs.

    The local derivatives are numbers known at creation time, so backward() only has to
    apply the chain rule: input.grad += local derivative * node.grad.
    """
    out = Value(data)
    out._inputs = inputs
    return out


def _topological_order(root: Value) -> list[Value]:
    """Every node reachable from `root`, each listed after all of its inputs.

    A depth-first post-order walk with an explicit stack rather than recursion, so graphs
    deeper than Python's recursion limit work too.
    """
    order: list[Value] = []
    visited: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))  # popped again once every input below it is ordered
        for child, _ in node._inputs:
            if id(child) not in visited:
                stack.append((child, False))
    return order


class Value:
    """A scalar in a computation graph, with the gradient of the last backward() output."""

    def __init__(self, data: float) -> None:
        self.data = float(data)
        self.grad = 0.0
        self._inputs: tuple[tuple[Value, float], ...] = ()

    def __repr__(self) -> str:
        return f"Value(data={self.data!r}, grad={self.grad!r})"

    def __add__(self, other: Value | float) -> Value:
        other = _lift(other)
        return _node(self.data + other.data, (self, 1.0), (other, 1.0))

    def __radd__(self, other: float) -> Value:
        return self + other

    def __sub__(self, other: Value | float) -> Value:
        other = _lift(other)
        return _node(self.data - other.data, (self, 1.0), (other, -1.0))

    def __rsub__(self, other: float) -> Value:
        return _lift(other) - self

    def __mul__(self, other: Value | float) -> Value:
        other = _lift(other)
        return _node(self.data * other.data, (self, other.data), (other, self.data))

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __truediv__(self, other: Value | float) -> Value:
        other = _lift(other)
        return _node(
            self.data / other.data,
            (self, 1.0 / other.data),
            (other, -self.data / other.data**2),
        )

    def __rtruediv__(self, other: float) -> Value:
        return _lift(other) / self

    def __pow__(self, exponent: float) -> Value:
        if isinstance(exponent, Value):
            raise TypeError("Value ** Value is not supported: the exponent must be a plain number")
        return _node(self.data**exponent, (self, exponent * self.data ** (exponent - 1)))

    def __neg__(self) -> Value:
        return _node(-self.data, (self, -1.0))

    def exp(self) -> Value:
        e = math.exp(self.data)
        return _node(e, (self, e))

    def log(self) -> Value:
        return _node(math.log(self.data), (self, 1.0 / self.data))

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        return _node(t, (self, 1.0 - t**2))

    def relu(self) -> Value:
        return _node(max(self.data, 0.0), (self, 1.0 if self.data > 0 else 0.0))

    def backward(self) -> None:
        order = _topological_order(self)
        self.grad = 1.0
        for node in reversed(order):
            for child, local_grad in node._inputs:
                child.grad += local_grad * node.grad
