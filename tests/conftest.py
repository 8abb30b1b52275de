"""Fixtures shared by the engine's own tests."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from helpers import ROOT


@pytest.fixture
def solutions_copy(tmp_path: Path) -> Path:
    """A solutions directory holding a copy of every reference solution."""
    target = tmp_path / "solutions"
    shutil.copytree(ROOT / "reference", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def marker() -> str:
    """An environment entry that every process of one grade run inherits."""
    return f"GRADE_TEST_MARK=test-{uuid.uuid4().hex}"
