"""The ``tlapp`` Typer app and its consoles, shared by every command module.

Command modules import this; :mod:`tlapp.cli.main` imports them all, so the
app is complete whichever way it is entered. Heavy imports happen inside
commands, so ``tlapp --help`` never loads TensorFlow.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from tlapp import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="tlapp: transfer learning for Keras, offline-first.")
weights_app = typer.Typer(no_args_is_help=True, help="Import and list pretrained weights for offline use.")
app.add_typer(weights_app, name="weights")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def dump(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (the ``--json`` flags)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _version(value: bool) -> None:
    if value:
        out.print(f"tlapp {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """tlapp: transfer learning for Keras, offline-first."""
