"""Shared command-line plumbing: every ``python -m fwi.<tool>`` resolves its config through here."""

from __future__ import annotations

import argparse
import functools
import os
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
    parser.add_argument("--config", metavar="FILE", help="YAML config file, or the name of a shipped one "
                        "(quickstart, inversionnet, ...: see configs/)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, applied after --config")
    return parser


def resolve_config(args: argparse.Namespace, extra_overrides: dict[str, Any] | None = None, *,
                   notes: Callable[[Config], list[str]] | None = None) -> Config:
    """The validated config for parsed ``args``; exits after printing it when ``--print-config``.

    ``extra_overrides`` (dotted key -> value) come from tool-specific flags such as ``--root`` and are
    applied last. ``notes(cfg)``: lines printed after the config as YAML comments (e.g. what ``amp_dtype=auto``
    resolves to on this machine).
    """
    cfg = load_config(args.config, [*args.overrides, *(extra_overrides or {}).items()])
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        sys.stdout.write("".join(f"# {line}\n" for line in (notes(cfg) if notes else [])))
        raise SystemExit(0)
    return cfg


LOG_REFRESH_S = "30"
"""Seconds between progress-bar updates when stderr is not a terminal (a log file gets a line per update)."""


def main_guard(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a tool's ``main(argv=None) -> int``: a :class:`FwiError` becomes ``error: <msg>``, exit 1.

    When stderr is not a terminal (a log file, a batch job, a notebook's captured output), every tqdm bar of
    the run updates at most every :data:`LOG_REFRESH_S` seconds (tqdm reads ``TQDM_MININTERVAL``; set it to
    override), so logs do not fill with progress lines.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        if not sys.stderr.isatty():
            os.environ.setdefault("TQDM_MININTERVAL", LOG_REFRESH_S)
        try:
            return main(*args, **kwargs)
        except FwiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
