"""The house rule of issue 19: no module over 600 lines, no class over 300, in authsvc/.

A module or a class that outgrows it is split by what it is about (see
docs/architecture.md), so every change to one concern does not land in the same file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authsvc"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def long_classes(source: str) -> dict[str, int]:
    """The classes of ``source`` (nested ones too) longer than the limit, with their lengths."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    }


def test_the_walk_finds_the_package():
    """The scan sees the modules it is meant to check (a wrong path would pass vacuously)."""
    names = {_name(path) for path in _modules()}
    assert {"__init__.py", "service.py", "openapi.py", "cli.py"} <= names


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_module_over_600_lines(path):
    """Each module of authsvc/ is at most 600 lines long."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines: split it by concern"


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_class_over_300_lines(path):
    """Each class of authsvc/ (nested ones too) spans at most 300 lines."""
    too_long = long_classes(path.read_text(encoding="utf-8"))
    assert not too_long, f"{_name(path)}: classes over {MAX_CLASS_LINES} lines: {too_long}"


def test_the_class_check_catches_a_long_class_and_spares_a_short_one():
    """A class of 301 lines (nested in another) is caught; one of 300 lines is not."""

    def klass(name: str, lines: int, indent: str = "") -> str:
        body = "\n".join(f"{indent}    x{i} = {i}" for i in range(lines - 1))
        return f"{indent}class {name}:\n{body}\n"

    assert long_classes(klass("Fits", MAX_CLASS_LINES)) == {}
    nested = "class Outer:\n" + klass("Inner", MAX_CLASS_LINES + 1, indent="    ")
    assert long_classes(nested) == {"Outer": MAX_CLASS_LINES + 2, "Inner": MAX_CLASS_LINES + 1}
