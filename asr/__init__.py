"""The speech core: frontend, text, RNN-T model and loss, decoding, metrics, FLOPs, training."""
