"""llm-grader: an autograder for learning large language models from scratch.

Importing this package is cheap on purpose: `grade --help` and `grade list` must not
import torch, so heavy modules are imported only where they are used.
"""

__version__ = "0.1.0"

from grader.hookspecs import hookimpl  # noqa: E402  (pluggy only; still no torch)

__all__ = ["__version__", "hookimpl"]
