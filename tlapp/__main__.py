"""``python -m tlapp`` = the ``tlapp`` command."""

from tlapp.cli.main import main

main()
