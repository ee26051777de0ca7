"""Amortized networks: branching encoders routed per frame by a latency-aware arbitrator."""
