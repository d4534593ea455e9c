"""Backbones: the catalog (plain data), builders for image and text networks, weights import, freeze plans."""
