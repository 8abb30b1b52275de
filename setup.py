"""The wheel carries the bundled curriculum inside the package, as grader/_curriculum.

The repository keeps its top-level layout (exercises/, reference/, plugins/, templates/); a
wheel built from it copies those folders under `grader/_curriculum/`, where
`grader.config.bundled_root` finds them, so no generic top-level name lands in
site-packages. An editable install reads them from the checkout instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CURRICULUM = ("exercises", "reference", "plugins", "templates")


class BuildWithCurriculum(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "grader" / "_curriculum"
        for name in CURRICULUM:
            if not (root / name).is_dir():  # a students' edition (grade release) has no reference/
                continue
            shutil.copytree(root / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".grade"))


setup(cmdclass={"build_py": BuildWithCurriculum})
