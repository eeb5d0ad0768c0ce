"""Measurement: metric definitions, memory tracking, the machine's fingerprint, synthetic prompts."""
