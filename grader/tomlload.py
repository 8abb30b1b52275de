"""TOML reading with the standard library (tomli before Python 3.11), and key checking."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from grader.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror}).") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}. Fix the syntax and run again.") from None


def expect(
    table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    """Return table[key] checked against `kind`, or `default`; a bad value names file and key."""
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing required key '{key}'.")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a TOML `true` is never a valid number here.
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: key '{key}' must be {names}, not {value!r}.")
    return value


def expect_str_list(table: dict[str, Any], key: str, where: str, default: Any = ...) -> list[str]:
    value = expect(table, key, list, where, default)
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: key '{key}' must be a list of strings, not {value!r}.")
    return list(value)


def reject_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    import difflib

    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"{where}: unknown key '{key}'{hint}. Known keys: {known}.")
