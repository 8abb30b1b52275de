"""Deterministic randomness for checks: one seed per (salt, exercise, check)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class Rng:
    """The `rng` fixture: a numpy Generator and a torch Generator from one seed.

    The same exercise, check and salt always give the same inputs, so a failure can be
    reproduced; hidden and CI runs add a secret salt so inputs can't be memorised.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.np = np.random.default_rng(seed)
        self.torch = torch.Generator().manual_seed(seed)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.torch, dtype=torch.float64) * scale).to(dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.rand(*shape, generator=self.torch, dtype=torch.float64).to(dtype)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.torch)

    def child(self, *parts: object) -> Rng:
        """An independent generator for a named sub-case, stable when other cases change."""
        return Rng(derive_seed(self.seed, *parts))


def seed_globals(seed: int) -> None:
    """Seed torch's, numpy's and Python's global random state in this process.

    The judge does it before each check, so that whatever draws from the global state there
    (a model built with its default initialisation, a known mistake that ignores its
    generator, a solution graded in direct mode) draws the same numbers whichever checks ran
    before: a check's verdict and message depend on its own inputs only.
    """
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
