"""Reading stored results back: comparisons between runs."""
