"""Corpora (tfds builders over array_record), folder ingestion, and length-bucketed batching."""
