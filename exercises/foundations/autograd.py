"""A scalar reverse-mode autograd engine (micrograd style).

Build `Value`, a scalar node of a computation graph. Arithmetic on Values builds the graph;
`out.backward()` then fills in `node.grad = d out / d node` for every node reachable from
`out`. The judge builds random expression graphs with your class and compares `.data` and
`.grad` with float64 torch autograd on the same expressions.

Conventions:
- `Value(data)` stores `data` as a Python float in `.data`; `.grad` starts at 0.0.
- Every operation returns a NEW Value and never changes its operands' `.data`.
- Binary operators + - * / work between two Values and between a Value and a plain
  int/float on either side: `v + 2`, `2 + v`, `v - 1`, `1 - v`, `2 * v`, `v / 4`, `1 / v`.
  A plain number is a constant: wrap it in a Value, or treat it as such; its gradient is
  never inspected.
- `v ** p`: the exponent `p` is a plain int or float constant, never a Value;
  d(v**p)/dv = p * v**(p - 1). Negative exponents (v != 0) and non-integer exponents
  (only for v > 0) are both used.
- Unary: `-v`, `v.exp()`, `v.log()` (natural log, v > 0), `v.tanh()` (use math.tanh:
  d tanh(v)/dv = 1 - tanh(v)**2), `v.relu()` = max(v, 0). relu's derivative is 1 for v > 0
  and 0 for v <= 0, so at exactly 0 it is 0 (the subgradient torch uses).
- `out.backward()` sets `out.grad = 1.0` (d out / d out) and then the gradient of `out`
  with respect to every node reachable from it, leaves and intermediate nodes alike. A
  node used more than once (`x * x`, or a shared subexpression feeding several
  operations) gets the SUM of the contributions of every use, so visit the nodes in
  reverse topological order: a node passes its gradient on only once it has received
  all of it. Nodes not reachable from `out` keep their gradient (0.0 on a fresh graph).
- What is judged: ONE call of `backward()` on a freshly built graph. Whether a second
  call accumulates or resets is up to you.
- Deep graphs: backward() must work on a chain of a few thousand operations, deeper
  than Python's default recursion limit (1000), so order the nodes without recursion
  (an explicit stack).
- Use floats and the `math` module only: no torch, numpy or other autograd library. Python
  floats are float64, so everything is computed in float64; `.data` and `.grad` are
  compared with float64 torch to about 1e-7 relative.
"""

from __future__ import annotations

import math  # noqa: F401


class Value:
    """A scalar node: `.data` (float), `.grad` (float, 0.0 until backward() sets it)."""

    def __init__(self, data: float) -> None:
        """A leaf holding `float(data)` with `.grad = 0.0` and no inputs."""
        raise NotImplementedError

    def __add__(self, other: Value | float) -> Value:
        """self + other; other is a Value or a plain number."""
        raise NotImplementedError

    def __radd__(self, other: float) -> Value:
        """other + self for a plain number `other` (Python calls this for `2 + v`)."""
        raise NotImplementedError

    def __sub__(self, other: Value | float) -> Value:
        """self - other."""
        raise NotImplementedError

    def __rsub__(self, other: float) -> Value:
        """other - self for a plain number `other` (`1 - v`): mind the order."""
        raise NotImplementedError

    def __mul__(self, other: Value | float) -> Value:
        """self * other."""
        raise NotImplementedError

    def __rmul__(self, other: float) -> Value:
        """other * self for a plain number `other` (`2 * v`)."""
        raise NotImplementedError

    def __truediv__(self, other: Value | float) -> Value:
        """self / other (other != 0)."""
        raise NotImplementedError

    def __rtruediv__(self, other: float) -> Value:
        """other / self for a plain number `other` (`1 / v`): mind the order."""
        raise NotImplementedError

    def __pow__(self, exponent: float) -> Value:
        """self ** exponent for a plain int or float `exponent` (never a Value).

        Derivative: exponent * self ** (exponent - 1).
        """
        raise NotImplementedError

    def __neg__(self) -> Value:
        """-self."""
        raise NotImplementedError

    def exp(self) -> Value:
        """e ** self; its derivative is itself."""
        raise NotImplementedError

    def log(self) -> Value:
        """Natural log of self (self > 0); derivative 1 / self."""
        raise NotImplementedError

    def tanh(self) -> Value:
        """tanh(self) via math.tanh; derivative 1 - tanh(self)**2."""
        raise NotImplementedError

    def relu(self) -> Value:
        """max(self, 0); derivative 1 if self > 0 else 0 (so 0 at exactly 0)."""
        raise NotImplementedError

    def backward(self) -> None:
        """Set self.grad = 1.0, then node.grad = d self / d node for every reachable node.

        Contributions from every use of a node are summed; nodes are processed in reverse
        topological order (each node after every node that uses it), found without recursion.
        Returns None.
        """
        raise NotImplementedError
