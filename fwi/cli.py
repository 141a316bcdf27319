"""Shared command-line plumbing: every ``python -m fwi.<tool>`` resolves its config through here."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from fwi.config import Config, dump_config, load_config
from fwi.errors import FwiError


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with the options every tool shares.

    ``--config FILE`` (YAML), ``--print-config`` (print the resolved config and exit) and positional
    ``section.key=value`` overrides, applied after the file.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see configs/)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, applied after --config")
    return parser


def resolve_config(args: argparse.Namespace, extra_overrides: dict[str, Any] | None = None) -> Config:
    """The validated config for parsed ``args``; exits after printing it when ``--print-config``.

    ``extra_overrides`` (dotted key -> value) come from tool-specific flags such as ``--root`` and are
    applied last.
    """
    cfg = load_config(args.config, [*args.overrides, *(extra_overrides or {}).items()])
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        raise SystemExit(0)
    return cfg


def main_guard(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a tool's ``main(argv=None) -> int``: a :class:`FwiError` becomes ``error: <msg>``, exit 1."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except FwiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
