"""Typed errors. Each names the bad file/field/value in a single line.

The CLI maps every :class:`TlappError` to exit code 2 and prints its message;
the GUI shows it in a dialog. Anything else is a bug and gets a traceback.
"""

from __future__ import annotations


class TlappError(Exception):
    """Base for errors caused by user input (exit code 2)."""

    exit_code = 2


class ConfigError(TlappError):
    """The project file or a ``--set`` override is invalid."""


class DataError(TlappError):
    """The dataset cannot be used (missing path, empty class, bad CSV...)."""


class WeightsError(TlappError):
    """Pretrained weights are missing, unreadable or do not fit the model."""


class BackboneError(TlappError):
    """Unknown backbone name or an option it does not accept."""


class TrainingError(TlappError):
    """Training had to stop (non-finite loss, nothing to train...)."""


class ExportError(TlappError):
    """An exported artifact failed to write or failed its parity check."""


class Cancelled(TlappError):
    """The user asked training to stop; the last checkpoint is kept."""

    exit_code = 130


def os_error_line(e: OSError) -> str:
    """``path: reason`` in one line for a failed write, whoever raised it: Python's ``OSError`` (errno and
    filename), or h5py's, whose message is several lines of HDF5 detail with ``errno = N`` and
    ``filename = '...'`` inside."""
    import errno as errnos
    import os
    import re

    text = str(e)
    code = e.errno if isinstance(e.errno, int) and e.errno in errnos.errorcode else None
    found = re.search(r"errno = (\d+)", text)
    if found:
        code = int(found.group(1))
    where = e.filename or (re.search(r"filename = '([^']+)'", text) or [None, None])[1]
    reason = os.strerror(code) if code is not None else (e.strerror or text).splitlines()[0].strip()
    return f"{where}: {reason}" if where else reason
