"""Fixtures shared by the engine's own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import ROOT


@pytest.fixture
def solutions_copy(tmp_path: Path) -> Path:
    """A solutions directory holding a copy of every reference solution."""
    target = tmp_path / "solutions"
    shutil.copytree(ROOT / "reference", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target
