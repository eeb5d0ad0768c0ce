"""Scenarios (floor 5): one module per kind of work on a model, each run through the harness.

``single_run`` (generation timing), ``evaluation`` (multiple-choice accuracy), ``perplexity`` and
``load`` (load tests of servers and in-process models). Each defines a config (a
:class:`~llmbench.harness.ModelSetup` plus its own fields, stored flat), a
:class:`~llmbench.harness.Scenario` subclass and a ``run_*`` function.
"""
