"""The machine: model caches on disk and what this system can run (``llmbench doctor``)."""
