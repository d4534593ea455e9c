"""Deployment: export (atomic, verified in a fresh process), prediction, evaluation of finished runs."""
