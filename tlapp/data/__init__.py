"""Data intake: sources (folder, CSV, TFDS), scans, the split, labels and tf.data pipelines."""
