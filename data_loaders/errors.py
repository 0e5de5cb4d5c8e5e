"""The error boundary of the `ticks`, `hfformer` and `dbbench` commands.

A known error prints one line on stderr (what went wrong, where, what to do) and exits with a
documented code; anything else is an internal error, also one line. `--debug`, anywhere on the
command line, adds the traceback. Every message passes through `redact`: errors quote DSNs.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from data_loaders.redact import redact

INTERNAL, USAGE, BAD_INPUT, ENGINE = 1, 2, 3, 4  # exit codes; 0 is success, 130 an interrupt
EXIT_CODES_HELP = "Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 server or engine. --debug: tracebacks."

_debug = False  # set from the command line by ErrorBoundary.main


def fail(message: object, code: int = BAD_INPUT) -> NoReturn:
    """A known failure: one line on stderr, then exit `code` (the traceback of the error being
    handled, if any, only with --debug)."""
    if _debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(f"error: {redact(str(message))}", file=sys.stderr)
    raise typer.Exit(code)


def _unexpected(exc: BaseException) -> int:
    """An exception no command anticipated: a file-system error is the user's to fix, anything else a bug."""
    if _debug:
        traceback.print_exception(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {redact(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return BAD_INPUT
    hint = "" if _debug else "; run again with --debug for the traceback"
    print(f"error: internal error ({type(exc).__name__}: {redact(str(exc))}){hint}", file=sys.stderr)
    return INTERNAL


class ErrorBoundary(TyperGroup):
    """The command group every CLI uses (`typer.Typer(cls=ErrorBoundary)`): maps whatever escapes a
    command to one line and an exit code, so no user sees a bare traceback or "Aborted!"."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        global _debug
        args = list(sys.argv[1:] if args is None else args)
        _debug = "--debug" in args
        args = [a for a in args if a != "--debug"]
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except typer.TyperException as exc:  # the command line itself is wrong: the usage line and the message
            if hasattr(exc, "show"):
                exc.show()
            else:
                print(f"error: {exc.format_message()}", file=sys.stderr)
            code = USAGE
        except typer.Abort as exc:  # typer turns an EOFError (a truncated compressed input) into Abort
            if _debug:
                traceback.print_exception(exc)
            print(f"error: an input ended early, truncated or corrupt ({redact(str(exc.__cause__))})", file=sys.stderr)
            code = BAD_INPUT
        except Exception as exc:  # noqa: BLE001 - the boundary: whatever escapes a command becomes one line
            code = _unexpected(exc)
        sys.exit(code)
