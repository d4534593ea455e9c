"""The tlapp desktop wizard (PySide6). Edits a project file and runs the same
core as the CLI; it has no training logic of its own."""
