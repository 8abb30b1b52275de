"""`grade gradescope-bundle OUT.zip`: a Gradescope autograder zip. At its root, Gradescope's
`setup.sh` and `run_autograder` (from `templates/ci/gradescope/`), and the course as a
project pip can install: `pyproject.toml`, `grader/`, and the curriculum (`exercises/`,
`reference/`, `plugins/`, `templates/`), hidden checks included, since the image is the
instructor's and never the student's."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from grader.config import bundled_root
from grader.errors import GraderError

SOURCES = ("pyproject.toml", "README.md", "grader", "exercises", "reference", "plugins", "templates")
SCRIPTS = ("setup.sh", "run_autograder")


def _files(root: Path) -> list[Path]:
    out = []
    for name in SOURCES:
        path = root / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out.extend(p for p in sorted(path.rglob("*"))
                       if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return out


def gradescope_bundle(out: Path) -> list[str]:
    """Write the zip to `out`; the names it holds."""
    root = bundled_root()
    if not (root / "pyproject.toml").is_file():
        raise GraderError(f"no course source to bundle at {root}: run grade gradescope-bundle from a clone of the "
                          "course repository (pip install -e .).")
    scripts = root / "templates" / "ci" / "gradescope"
    names = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for script in SCRIPTS:
            info = zipfile.ZipInfo(script)
            info.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unzipped
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, (scripts / script).read_bytes())
            names.append(script)
        for path in _files(root):
            name = path.relative_to(root).as_posix()
            z.write(path, name)
            names.append(name)
    return names
