"""Scenarios: what is run against a loaded backend (single-run benchmark, ...)."""
