"""One module per wizard step; each page can be shown on its own."""
