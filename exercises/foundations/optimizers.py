"""SGD with momentum (and Nesterov) and AdamW, written as `torch.optim.Optimizer` subclasses.

Both must follow torch.optim.SGD and torch.optim.AdamW exactly, step for step; they are
judged against them over 200 steps. Conventions shared by both:

- Call `super().__init__(params, defaults)` with `defaults` the dict of the constructor's
  hyperparameters under their argument names: {"lr", "momentum", "weight_decay",
  "nesterov"} for SGD, {"lr", "betas", "eps", "weight_decay"} for AdamW. `params` is an
  iterable of tensors or a list of param-group dicts; the base class turns it into
  `self.param_groups`, each group a dict holding its "params" and those keys (a learning-rate
  scheduler changes group["lr"]). In `step()`, read every hyperparameter from the group
  being updated (`group["lr"]`, ...), never from the constructor's arguments or
  `self.defaults`: a group may override any of them.
- `step(closure=None)`: if `closure` is given, call it first, inside
  `with torch.enable_grad():`, before any parameter changes, and return its result;
  otherwise return None. Then update every parameter of every group in place from its
  current `.grad`.
- A parameter whose `.grad` is None is skipped entirely on that step: its value, its state
  (momentum buffer, moments, step count) and its weight decay are all left untouched.
- Per-parameter state lives in `self.state[p]` (a dict, empty until the parameter's first
  update). Update parameters in place (`p.add_`, `p.mul_`, ...) under `torch.no_grad()`
  (decorate `step` with `@torch.no_grad()`): the parameters are `nn.Parameter`s.
- Work in the parameter's dtype; do not call torch.optim.SGD / Adam / AdamW or the
  functions in torch.optim._functional.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class SGD(torch.optim.Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    For each parameter p with gradient g = p.grad, with lr, mu = momentum,
    wd = weight_decay taken from p's group:

        d = g + wd * p                 (only if wd != 0: decay is added to the gradient,
                                        BEFORE momentum; it uses p's value before this step)
        if mu != 0:
            buf = d                    on p's first update (the buffer starts at the first
                                        gradient, not at zeros)
            buf = mu * buf + d         on every later update (no dampening)
            d = d + mu * buf           if nesterov (using the buffer just updated)
            d = buf                    otherwise
        p = p - lr * d

    With momentum == 0 there is no buffer (and nesterov has no effect).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        """Store lr, momentum, weight_decay and nesterov as the defaults of every group."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns closure() or None."""
        raise NotImplementedError


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.

    For each parameter p with gradient g = p.grad, with lr, (b1, b2) = betas, eps and
    wd = weight_decay taken from p's group, and m, v (zeros of p's shape and dtype before
    its first update) and t (0 before its first update) from p's state:

        t = t + 1                      (t counts THIS parameter's updates: steps on which
                                        its grad was None don't count)
        p = p * (1 - lr * wd)          decoupled decay: applied to the weights, scaled by
                                        lr, BEFORE the Adam update, and never added to g
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)      bias correction of both moments
        v_hat = v / (1 - b2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)      eps is added AFTER the square root
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        """Store lr, betas, eps and weight_decay as the defaults of every group."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns closure() or None."""
        raise NotImplementedError
