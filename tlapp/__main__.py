"""``python -m tlapp`` = the ``tlapp`` command."""
from tlapp.cli import main

main()
