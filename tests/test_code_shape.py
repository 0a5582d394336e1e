"""The product code keeps a shape a reader can follow: no function longer than a screen or two."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("accounts", "config", "devstack", "inbox", "integrations")
LONGEST = 80  # lines, decorators and docstring included


def long_functions() -> list[str]:
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    length = (node.end_lineno or node.lineno) - first + 1
                    if length > LONGEST:
                        where = path.relative_to(ROOT)
                        found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_in_product_code_is_longer_than_80_lines():
    assert long_functions() == []


def test_the_check_finds_a_long_function(tmp_path, monkeypatch):
    package = tmp_path / "inbox"
    package.mkdir()
    body = "\n".join(f"    x{n} = {n}" for n in range(LONGEST))
    (package / "long.py").write_text(f"def too_long():\n{body}\n", encoding="utf-8")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "PRODUCT", ("inbox",))

    assert long_functions() == ["inbox/long.py:1 too_long (81 lines)"]
