"""`grade new-track` and `grade new-exercise`: a track plugin from the templates in
`templates/track/`, ready for `pip install -e` and `grade check`."""

from __future__ import annotations

import re
from pathlib import Path

from grader.config import bundled_root
from grader.errors import ConfigError

NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
FIRST_EXERCISE = "scale"


def _templates() -> Path:
    return bundled_root() / "templates" / "track"


def _render(template: str, **values: str) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_templates())), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    return env.get_template(template).render(**values)


def _check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise ConfigError(f"'{name}' cannot name a {what}: use lowercase letters, digits and underscores, "
                          "starting with a letter (it becomes a Python module name).")


def _write(path: Path, text: str) -> None:
    if path.exists():
        raise ConfigError(f"{path} already exists; choose another name or remove it first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def new_track(name: str, parent: Path) -> Path:
    """A track plugin project in `parent`/grade-track-<name>, with one exercise; its path."""
    _check_name(name, "track")
    dist, package = f"grade-track-{name.replace('_', '-')}", f"grade_track_{name}"
    root = parent / dist
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or directory.")
    title = name.replace("_", " ").capitalize()
    values = {"name": name, "title": title, "dist": dist, "package": package}
    _write(root / "pyproject.toml", _render("pyproject.toml.j2", **values))
    _write(root / package / "__init__.py", _render("package/__init__.py.j2", **values))
    _write(root / package / "plugin.py", _render("package/plugin.py.j2", **values))
    track = root / package / "track"
    _write(track / "track.toml", _render("package/track/track.toml.j2", **values))
    new_exercise(track, name, FIRST_EXERCISE, track / "exercises", track / "reference")
    return root


def new_exercise(track_dir: Path, track: str, name: str, stubs: Path, reference: Path) -> list[Path]:
    """Add exercise `name` to the track in `track_dir`: its toml, checks, stub and reference,
    and its id in track.toml's list. The files written."""
    _check_name(name, "exercise")
    values = {"track": track, "exercise": name, "function": name}
    files = [
        (track_dir / f"{name}.toml", "package/track/exercise.toml.j2"),
        (track_dir / f"check_{name}.py", "package/track/check_exercise.py.j2"),
        (stubs / f"{name}.py", "package/track/stub.py.j2"),
        (reference / f"{name}.py", "package/track/reference.py.j2"),
    ]
    toml = track_dir / "track.toml"
    text = toml.read_text()
    listed = re.search(r"^exercises\s*=\s*\[(?P<items>[^\]]*)\]", text, re.M)
    if listed is None:
        raise ConfigError(f"{toml} has no 'exercises = [...]' list to add {name} to.")
    items = [i.strip() for i in listed["items"].split(",") if i.strip()]
    if f'"{name}"' in items:
        raise ConfigError(f"{track}.{name} is already listed in {toml}.")
    for path, _ in files:
        if path.exists():
            raise ConfigError(f"{path} already exists; choose another name or remove it first.")
    for path, template in files:
        _write(path, _render(template, **values))
    new_list = "exercises = [" + ", ".join([*items, f'"{name}"']) + "]"
    toml.write_text(text[:listed.start()] + new_list + text[listed.end():])
    return [path for path, _ in files]
