"""Benchmarks of the monitoring area (python -m bench.monitoring)."""
