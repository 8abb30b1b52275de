"""SGD with momentum (and Nesterov) and AdamW as torch.optim.Optimizer subclasses, step for step
the same as torch.optim.SGD and torch.optim.AdamW."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def _evaluate(closure: Callable[[], Any] | None) -> Any:
    """The closure's loss, computed before any parameter changes (None without a closure)."""
    if closure is None:
        return None
    with torch.enable_grad():  # step() runs under no_grad; the closure may need autograd
        return closure()


class SGD(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if weight_decay != 0:
                    d_p = d_p + weight_decay * p  # L2 decay enters the gradient, before momentum
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = d_p.clone()  # the first step starts the buffer at the gradient
                    else:
                        buf = momentum * state["momentum_buffer"] + d_p
                    state["momentum_buffer"] = buf
                    if nesterov:
                        d_p = d_p + momentum * buf
                    else:
                        d_p = buf
                p.add_(d_p, alpha=-lr)
        return loss


class AdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, weight_decay = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1  # per parameter: steps without a gradient don't count
                t = state["step"]
                p.mul_(1 - lr * weight_decay)  # decoupled decay, on the weights, before the update
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
        return loss
