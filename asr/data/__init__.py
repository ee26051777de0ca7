"""Loaders and batching: length-bucketed batching, folder ingestion, LibriSpeech (its own
folders, or tfds); the embedded synthetic corpus is the `voice_assistant` package."""
