"""Base helpers every layer may use: typed errors, atomic writes, paths, quiet TensorFlow import."""
