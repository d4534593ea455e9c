"""Entry point of ``tlapp``: map typed errors to exit codes and one line of text.

Exit codes: 0 ok, 2 bad input/config (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

from typing import Optional

from tlapp.base.errors import TlappError
from tlapp.cli import data_cmds, plan_cmds, project_cmds, run_cmds  # noqa: F401  (they register their commands on the app)
from tlapp.cli.app import app, err


def _quiet_stdout() -> None:
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: map typed errors to exit codes and one line of text."""
    try:
        app(args=argv, standalone_mode=False)
    except TlappError as e:
        err.print(f"error: {e}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except BrokenPipeError:
        # `tlapp predict ... | head`: the reader left; end quietly (and silence Python's own report).
        _quiet_stdout()
        raise SystemExit(0) from None
    except OSError as e:  # disk full, read-only folder, a path whose parent is a file...
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"error: {where}{e.strerror or e}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except SystemExit:
        raise
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            raise SystemExit(2) from None
        if isinstance(e, click.exceptions.Abort):
            raise SystemExit(130) from None
        raise
