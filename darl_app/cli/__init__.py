"""``python -m darl_core`` (or ``python -m darl_app``): one argparse CLI whose subcommands live in this package.

Each module here exposes ``register(subparsers)``, which adds its subcommands and sets
``func(args) -> int`` on each parser. Modules are discovered, so adding a command never edits this
file. Like the pages, the CLI is an edge: it turns ``DarlError`` into a one-line message and a non-zero
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from darl_app import queue
from darl_core.errors import DarlError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m darl_core",
        description="DaRL Studio: relevance labelling, DASA selection and robust fine-tuning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    queue.install()  # jobs this command queues go straight to the workers
    try:
        return int(args.func(args) or 0)
    except DarlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing partial was committed", file=sys.stderr)
        return 130
