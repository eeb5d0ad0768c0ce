"""The model set-up and the one harness every scenario runs through (floor 4).

Higher floors (scenarios, sweep, CLI) describe a model with :class:`ModelSetup` and run work on it
with :func:`run_scenario`; nothing above this package wires backend, memory tracker, fingerprint
and store together by itself.
"""

from llmbench.harness._run import (
    Opened,
    Partial,
    ProgressCallback,
    RecordSink,
    Scenario,
    describe_failure,
    environment,
    failed_record,
    memory_usage,
    run_scenario,
    status_of,
)
from llmbench.harness._setup import SETUP_FIELDS, ModelSetup, ScenarioConfig, select_backend, split_config

__all__ = [
    "SETUP_FIELDS",
    "ModelSetup",
    "Opened",
    "Partial",
    "ProgressCallback",
    "RecordSink",
    "Scenario",
    "ScenarioConfig",
    "describe_failure",
    "environment",
    "failed_record",
    "memory_usage",
    "run_scenario",
    "select_backend",
    "split_config",
    "status_of",
]
