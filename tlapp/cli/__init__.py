"""The ``tlapp`` command line (entry point: :func:`tlapp.cli.main.main`)."""
