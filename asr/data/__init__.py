"""Loaders and batching: length-bucketed batching, folder ingestion, LibriSpeech; the embedded
synthetic corpus is the `voice_assistant` package."""
