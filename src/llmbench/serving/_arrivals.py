"""Request arrival times for open-loop load: Poisson or gamma (burstiness) processes."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

Distribution = Literal["poisson", "gamma", "constant"]


def iter_arrival_offsets(
    rate: float, distribution: Distribution = "poisson", burstiness: float = 1.0, seed: int = 0
) -> Iterator[float]:
    """Send times in seconds from the start, at ``rate`` requests per second on average, drawn as
    they are needed (an hour-long step holds none of them in memory).

    Poisson: exponential gaps. Gamma: gaps with shape ``burstiness`` and the same mean (below 1
    burstier than Poisson, above 1 more regular; 1 is Poisson). Constant: evenly spaced.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    mean = 1.0 / rate
    now = 0.0
    while True:
        yield now
        if distribution == "constant":
            gap = mean
        elif distribution == "gamma":
            gap = rng.gammavariate(burstiness, mean / burstiness)
        else:
            gap = rng.expovariate(rate)
        now += gap
