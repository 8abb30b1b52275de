"""`grade new-track` and `grade new-exercise`. Followed as an instructor would (scaffold,
install with pip into an environment of its own, prove with `grade check`, grade), they
are tested by tests/test_tutorial.py, which runs the tutorial in docs/plugins.md."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("name", ["Demo", "1demo", "de-mo", "de mo"])
def test_a_track_name_must_be_a_module_name(tmp_path: Path, name: str):
    from grader.errors import ConfigError
    from grader.scaffold import new_track

    with pytest.raises(ConfigError, match="cannot name a track"):
        new_track(name, tmp_path)
