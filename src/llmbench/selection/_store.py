"""The leaderboard of what a store holds: the join wired to the store and the model files."""

from __future__ import annotations

from collections.abc import Sequence

from llmbench.selection._configs import configuration_of
from llmbench.selection._facts import read_facts
from llmbench.selection._join import build_leaderboard
from llmbench.selection._types import Leaderboard, Price
from llmbench.store import RunRecord, Store


def leaderboard_from_store(
    store: Store,
    sweep_ids: Sequence[str] = (),
    *,
    records: Sequence[RunRecord] | None = None,
    price: Price | None = None,
    normalization: str | None = None,
    alpha: float = 0.05,
    facts: bool = True,
) -> Leaderboard:
    """Every configuration the store holds (or the given sweeps' / records'), with the evaluations
    of exactly those configurations wherever in the store they are."""
    if records is None and not sweep_ids:
        chosen = [r for r in store.runs() if r.kind in ("generate", "eval", "load")]
    else:
        chosen = list(records or [])
        for sweep_id in sweep_ids:
            chosen += list(store.runs(sweep_id=store.sweep(sweep_id).id))
        wanted = {configuration_of(record) for record in chosen}
        seen = {record.id for record in chosen}
        chosen += [
            record
            for record in store.runs(kind="eval")
            if record.id not in seen and record.status == "ok" and configuration_of(record) in wanted
        ]
    return build_leaderboard(
        chosen,
        examples=store.eval_examples,
        facts=read_facts if facts else None,
        price=price,
        normalization=normalization,
        alpha=alpha,
    )
