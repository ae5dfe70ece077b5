"""Who is in each clip: a person id per clip from dlib face descriptors, with an optional ``people.csv`` override.

Each clip carries the dlib 128-d face descriptors of a few of its frames (``video_clip._face_descriptors``).
Two faces whose descriptors are closer than 0.6 (Euclidean) are the same person by dlib's own convention (the
threshold of ``face_recognition.compare_faces``; dlib reports 99.38 % on LFW with it). That threshold is for
single faces, so the distance of two clips is the mean distance over all pairs of their frames (not the distance
of averaged descriptors, which shrinks and would need another threshold). Clips are grouped by average-linkage
agglomerative clustering of that distance cut at 0.6, so a person whose clips differ in lighting or crop still
forms one group as long as the clips are on average within the threshold.

``people.csv`` (``file,person`` rows, file = the video's file name or stem; a header line is allowed) fixes the
person of the clips it lists; the other clips join the nearest listed person within the threshold, or are
clustered among themselves.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

__all__ = ["SAME_PERSON_DISTANCE", "PEOPLE_FILE", "read_people_csv", "clip_distance", "cluster_embeddings",
           "assign_people"]

SAME_PERSON_DISTANCE = 0.6  # dlib face descriptor distance below which two faces are the same person
PEOPLE_FILE = "people.csv"  # looked for in the video folder


def read_people_csv(path: str | os.PathLike) -> dict[str, str]:
    """``file,person`` rows -> {file name or stem: person}; a first row ``file,person`` is a header."""
    out: dict[str, str] = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[1]:
                raise ValueError(f"{path}, line {i + 1}: expected 'file,person', got {row}")
            if i == 0 and row[0].lower() == "file" and row[1].lower() == "person":
                continue
            out[row[0]] = row[1]
    return out


def clip_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of frame descriptors of two clips ([Ka, D], [Kb, D])."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    return float(np.linalg.norm(a[:, None] - b[None], axis=-1).mean())


def cluster_embeddings(embeddings, threshold: float = SAME_PERSON_DISTANCE) -> np.ndarray:
    """Average-linkage clusters cut at ``threshold`` -> labels [N] (0, 1, ... in order of first appearance).

    embeddings: N clips, each one descriptor [D] or several [K, D] (distance: :func:`clip_distance`).
    """
    clips = [np.atleast_2d(np.asarray(e, np.float64)) for e in embeddings]
    if any(c.ndim != 2 or c.shape[0] == 0 for c in clips):
        raise ValueError("each clip needs one descriptor [D] or several [K, D]")
    if len(clips) <= 1:
        return np.zeros(len(clips), int)
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(clips)
    condensed = np.array([clip_distance(clips[i], clips[j]) for i in range(n) for j in range(i + 1, n)])
    raw = fcluster(linkage(condensed, method="average"), t=threshold, criterion="distance")
    order = {c: i for i, c in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[c] for c in raw.tolist()], int)


def _lookup(people: dict[str, str], name: str) -> str | None:
    return people.get(name, people.get(Path(name).stem))


def assign_people(sources: list[str], embeddings: list, people: dict[str, str] | None = None,
                  threshold: float = SAME_PERSON_DISTANCE) -> tuple[list[str], dict]:
    """A person name per clip -> (names [N], how: counts of clips labelled by csv / joined / clustered).

    sources: the clips' video file names; embeddings: per clip, its frame descriptors [K, 128] (or one [128]), or
    None (then the file's stem is its own person). Clustered people are named ``person_00``, ``person_01``, ...
    in corpus order.
    """
    people = people or {}
    names: list[str | None] = [_lookup(people, s) for s in sources]
    how = {"csv": sum(n is not None for n in names), "joined": 0, "clustered": 0, "no_embedding": 0}
    vec = [None if e is None or len(e) == 0 else np.atleast_2d(np.asarray(e, np.float64)) for e in embeddings]
    labelled: dict[str, list[np.ndarray]] = {}
    for n, v in zip(names, vec):
        if n is not None and v is not None:
            labelled.setdefault(n, []).append(v)
    groups = {n: np.concatenate(v) for n, v in labelled.items()}  # all frame descriptors of each listed person
    free = []
    for i, (n, v) in enumerate(zip(names, vec)):
        if n is not None:
            continue
        if v is None:
            names[i] = Path(sources[i]).stem
            how["no_embedding"] += 1
            continue
        if groups:
            dist = {p: clip_distance(g, v) for p, g in groups.items()}
            best = min(dist, key=dist.get)
            if dist[best] < threshold:
                names[i] = best
                how["joined"] += 1
                continue
        free.append(i)
    if free:
        labels = cluster_embeddings([vec[i] for i in free], threshold)
        taken = set(n for n in names if n is not None)
        fresh, k = {}, 0
        for i, lab in zip(free, labels.tolist()):
            if lab not in fresh:
                while f"person_{k:02d}" in taken:
                    k += 1
                fresh[lab] = f"person_{k:02d}"
                taken.add(fresh[lab])
            names[i] = fresh[lab]
        how["clustered"] = len(free)
    return [str(n) for n in names], how
