"""Serving benchmark: throughput and latency of the app against a naive baseline, and a soak."""
