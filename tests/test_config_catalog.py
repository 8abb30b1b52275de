"""Configuration and catalog errors name the file and the key, and suggest the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT

from grader.catalog import Mutant, load_track
from grader.config import find_config_file, load_config
from grader.errors import ConfigError, GraderError
from grader.plugins import GradePlugins


@pytest.mark.parametrize(
    "text, words",
    [
        ("[tool.grade]\nsolutoins = 'x'\n", "unknown key 'solutoins' (did you mean 'solutions'?)"),
        ("[tool.grade]\njobs = 0\n", "key 'jobs' must be at least 1"),
        ("[tool.grade]\njobs = 'two'\n", "key 'jobs' must be int"),
        ("[tool.grade]\nfail_under = 120\n", "percentage from 0 to 100"),
        ("[tool.grade]\ntimeout = true\n", "key 'timeout' must be int or float"),
        ("[tool.grade]\nplugins = [1]\n", "must be a list of strings"),
        ("[tool.grade\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, words: str):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert words in str(info.value)
    assert str(tmp_path / "pyproject.toml") in str(info.value)


def test_nearest_config_wins_and_paths_are_relative_to_it(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no [tool.grade]: skipped
    (tmp_path / "grade.toml").write_text('solutions = "mine"\nseed = 7\n[myplugin]\nlevel = 2\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config_file(deep) == tmp_path / "grade.toml"
    cfg = load_config(deep)
    assert cfg.solutions == tmp_path / "mine" and cfg.seed == 7
    assert cfg.section("myplugin") == {"level": 2} and cfg.state_dir == tmp_path / ".grade"


def test_no_config_means_exercises_in_the_current_directory(tmp_path: Path):
    cfg = load_config(tmp_path)
    assert cfg.path is None and cfg.solutions == tmp_path / "exercises"


def write_track(root: Path, exercise_toml: str) -> Path:
    (root / "track.toml").write_text('id = "t"\ntitle = "T"\nexercises = ["e"]\n')
    (root / "e.toml").write_text(exercise_toml)
    return root / "track.toml"


@pytest.mark.parametrize(
    "toml, words",
    [
        ('title = "E"\nhint = ["x"]\n', "unknown key 'hint' (did you mean 'hints'?)"),
        ('title = "E"\ntimeout = -1\n', "must be positive"),
        ('title = "E"\nmax_frame_mb = 0\n', "must be positive"),
        ('title = "E"\n[[mutants]]\nname = "m"\nreplace = "a"\nwith = "b"\n', "missing required key 'misconception'"),
        ("hints = []\n", "missing required key 'title'"),
    ],
)
def test_bad_exercise_files_name_file_and_key(tmp_path: Path, toml: str, words: str):
    path = write_track(tmp_path, toml)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_track(path)


def test_the_reply_cap_is_set_per_exercise(tmp_path: Path):
    [exercise] = load_track(write_track(tmp_path, 'title = "E"\nmax_frame_mb = 512\n')).exercises
    assert exercise.max_frame_mb == 512
    (tmp_path / "default").mkdir()
    [exercise] = load_track(write_track(tmp_path / "default", 'title = "E"\n')).exercises
    assert exercise.max_frame_mb == 256


def test_mutant_edits_must_match_exactly_once():
    m = Mutant("m", "why", (("x + 1", "x + 2"),))
    assert m.apply("y = x + 1\n") == "y = x + 2\n"
    with pytest.raises(GraderError, match="not found"):
        m.apply("y = x\n")
    with pytest.raises(GraderError, match="found 2 times"):
        m.apply("x + 1; x + 1")


def test_targets_resolve_tracks_exercises_checks_and_globs():
    catalog = GradePlugins(load_config(ROOT)).catalog()
    everything = catalog.select([])
    assert [e.id for e, _ in everything][:2] == ["foundations.softmax", "foundations.cross_entropy"]
    assert len(catalog.select(["foundations"])) == len(catalog.track("foundations").exercises)
    assert catalog.select(["foundations.softmax"]) == [(catalog.exercise("foundations.softmax"), None)]
    [(ex, checks)] = catalog.select(["foundations.softmax.length_one_axis"])
    assert ex.id == "foundations.softmax" and checks == frozenset({"length_one_axis"})
    assert {e.id for e, _ in catalog.select(["foundations.*_backward"])} == {
        "foundations.mlp_backward", "foundations.layernorm_backward"}
    with pytest.raises(GraderError, match=r"no track or exercise named 'foundation' \(did you mean 'foundations'\?\)"):
        catalog.select(["foundation"])
    with pytest.raises(GraderError, match="no exercise matches"):
        catalog.select(["nothing.*"])
