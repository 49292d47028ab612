"""No message the app can show mentions a command-line flag (``--from``, ``--create``): the app has no flags.

Walks the string literals (docstrings aside) of the pages, app.py and the services the app calls. The
import and demo services are the command line's own (no page imports them), so their messages may.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_ONLY = {"imports.py", "demo.py"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def _files() -> list[Path]:
    return [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")),
            *(p for p in sorted((ROOT / "db" / "services").glob("*.py")) if p.name not in CLI_ONLY)]


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_message_mentions_a_cli_flag() -> None:
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in _files() for line, text in _strings(p)
             if FLAG.search(text)]
    assert not found, "messages the app shows name CLI flags:\n" + "\n".join(found)


def test_cli_only_services_are_not_used_by_the_app() -> None:
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        text = path.read_text()
        for module in CLI_ONLY:
            name = module.removesuffix(".py")
            assert not re.search(rf"db\.services(\.| import .*\b){name}\b", text), f"{path.name} uses {name}"
