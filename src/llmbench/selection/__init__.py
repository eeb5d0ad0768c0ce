"""Choosing a model: measured quality joined with measured cost, per configuration.

    with Store() as store:
        board = leaderboard_from_store(store, price=Price(per_hour=1.2))
    answer = recommend(board, Constraints(task="arithmetic", max_memory_bytes=8 << 30, min_decode_tps=20))

A row is one configuration (a model on a backend with its set-up settings); its accuracy on a task
comes only from an evaluation of exactly that configuration. Ties follow a paired McNemar test with
Holm's correction; the Pareto front is drawn over accuracy against each cost axis. Missing data
stays missing (None), never zero. See docs/selection.md.
"""

from llmbench.selection._configs import Configuration, configuration_of, label_of
from llmbench.selection._join import build_leaderboard, check_normalization, outcomes, task_key
from llmbench.selection._pareto import dominates, pareto_front
from llmbench.selection._recommend import (
    WEIGHT_NAMES,
    Constraints,
    Pick,
    Recommendation,
    Unmeasured,
    recommend,
    resolve_task,
    show,
)
from llmbench.selection._store import leaderboard_from_store
from llmbench.selection._table import COLUMNS, as_json, columns_for, flat, flat_rows, standing
from llmbench.selection._ties import holm, paired_tests
from llmbench.selection._types import (
    AXES,
    AXIS_COLUMNS,
    AXIS_LIST,
    AXIS_NAMES,
    Axis,
    Cost,
    Leaderboard,
    MemoryFigure,
    PairTest,
    Price,
    Row,
    SpecFacts,
    TaskScore,
)

__all__ = [
    "AXES",
    "AXIS_COLUMNS",
    "AXIS_LIST",
    "AXIS_NAMES",
    "COLUMNS",
    "WEIGHT_NAMES",
    "Axis",
    "Configuration",
    "Constraints",
    "Cost",
    "Leaderboard",
    "MemoryFigure",
    "PairTest",
    "Pick",
    "Price",
    "Recommendation",
    "Row",
    "SpecFacts",
    "TaskScore",
    "Unmeasured",
    "as_json",
    "build_leaderboard",
    "check_normalization",
    "columns_for",
    "configuration_of",
    "dominates",
    "flat",
    "flat_rows",
    "holm",
    "label_of",
    "leaderboard_from_store",
    "outcomes",
    "paired_tests",
    "pareto_front",
    "recommend",
    "resolve_task",
    "show",
    "standing",
    "task_key",
]
