"""Request arrival times for open-loop load: Poisson or gamma (burstiness) processes."""

from __future__ import annotations

import random
from typing import Literal

Distribution = Literal["poisson", "gamma", "constant"]


def arrival_offsets(
    rate: float, count: int, distribution: Distribution = "poisson", burstiness: float = 1.0, seed: int = 0
) -> list[float]:
    """``count`` send times in seconds from the start, at ``rate`` requests per second on average.

    Poisson: exponential gaps. Gamma: gaps with shape ``burstiness`` and the same mean (below 1
    burstier than Poisson, above 1 more regular; 1 is Poisson). Constant: evenly spaced.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(seed)
    mean = 1.0 / rate
    offsets, now = [], 0.0
    for _ in range(count):
        offsets.append(now)
        if distribution == "constant":
            gap = mean
        elif distribution == "gamma":
            gap = rng.gammavariate(burstiness, mean / burstiness)
        else:
            gap = rng.expovariate(rate)
        now += gap
    return offsets
