"""Train / held-out splits of a corpus, by person: no identity is in both (where people are involved).

Every clip entry of ``corpus.json`` carries ``identity_id`` (one per person: the default corpus's portrait
identity, or the person found in a real video). :func:`identity_split` holds out whole identities; with a single
identity it falls back to holding out the last clips and says so (``CorpusSplit.identity_disjoint`` False), so a
report can label the numbers as same-person.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .format import load_index


@dataclass(frozen=True)
class CorpusSplit:
    """Clip ids (corpus order) for training and held-out evaluation, and the identities on each side."""

    train: list[str]
    heldout: list[str]
    train_identities: list = field(default_factory=list)
    heldout_identities: list = field(default_factory=list)
    identity_disjoint: bool = True

    def describe(self) -> str:
        kind = "identity-disjoint" if self.identity_disjoint else "same identities (only one person in the corpus)"
        return (f"{len(self.train)} train clips ({len(self.train_identities)} people) / {len(self.heldout)} held-out "
                f"clips ({len(self.heldout_identities)} people), {kind}")

    def to_json(self) -> dict:
        return {"train": list(self.train), "heldout": list(self.heldout),
                "train_identities": list(self.train_identities), "heldout_identities": list(self.heldout_identities),
                "identity_disjoint": bool(self.identity_disjoint)}


def identity_split(corpus: str | os.PathLike | dict, heldout_fraction: float = 0.25, seed: int = 0,
                   min_heldout_clips: int = 1) -> CorpusSplit:
    """Hold out ``ceil(heldout_fraction * people)`` whole identities (at least one, never all), drawn with
    ``seed``; ``corpus``: a corpus folder or its index dict. One identity only: the last ``min_heldout_clips``
    clips are held out instead (``identity_disjoint`` False)."""
    index = corpus if isinstance(corpus, dict) else load_index(corpus)
    entries = index["clips"]
    if len(entries) < 2:
        raise ValueError(f"a split needs at least 2 clips, the corpus has {len(entries)}: build a larger corpus")
    ids = [c["id"] for c in entries]
    people = [c.get("identity_id", 0) for c in entries]
    distinct = sorted(set(people), key=str)
    if len(distinct) < 2:
        k = max(1, min(min_heldout_clips, len(ids) - 1))
        return CorpusSplit(ids[:-k], ids[-k:], distinct, distinct, identity_disjoint=False)
    n_held = min(len(distinct) - 1, max(1, math.ceil(heldout_fraction * len(distinct))))
    order = np.random.default_rng(seed).permutation(len(distinct))
    held_people = {distinct[i] for i in order[:n_held]}
    train = [i for i, p in zip(ids, people) if p not in held_people]
    heldout = [i for i, p in zip(ids, people) if p in held_people]
    return CorpusSplit(train, heldout, [p for p in distinct if p not in held_people],
                       [p for p in distinct if p in held_people], identity_disjoint=True)
