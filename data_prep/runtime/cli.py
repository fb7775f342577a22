"""The prologue and epilogue every entry point shares: its parser (description from the module's docstring, the
experiment flags), argument types that refuse zero or negative values, and expected errors to exit code 2.

Usage::

    def main(argv=None) -> int:
        p = parser("python -m eval.run", __doc__)        # --config and --set come with it
        p.add_argument("--max-new-tokens", type=positive_int)
        a = p.parse_args(argv)
        return run(lambda: work(a))                     # 0, or 2 with "error: ..." on stderr

Imports no torch.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..config import DEFAULT_EXPERIMENT
from ..errors import HarnessError

# expected failures: said in one line; ValueError / OSError subclasses the standard library raises on bad input
EXPECTED = (HarnessError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ValueError)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The two flags every entry point takes: --config and --set key=value overrides."""
    p.add_argument("--config", default=str(DEFAULT_EXPERIMENT),
                   help="experiment YAML: a path from the current directory, or a name under "
                        "swift_configs/experiments/ (default: the embedded demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an experiment key, e.g. --set folds.k=5 (repeatable; docs/config.md)")


def parser(prog: str, doc: str | None, config: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if config:
        add_config_args(p)
    return p


def int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (anything below refused, never replaced by a default)."""
    want = "a positive integer (>= 1)" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: want {want}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{text!r}: want {want}")
        return v

    parse.__name__ = "positive_int" if low == 1 else f"int_at_least_{low}"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def batch_arg(text: str):
    """``auto`` or a positive integer."""
    return text if text == "auto" else positive_int(text)


def run(work: Callable[[], int | None]) -> int:
    """``work()``'s exit code (None: 0); an expected error printed as one line, exit code 2."""
    try:
        rc = work()
    except EXPECTED as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0 if rc is None else rc
