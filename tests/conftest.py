"""Shared pytest fixtures: where ../shared/reference is, and the seeded official-format checkpoints.

The parity tests compare our modules with outputs the official SadTalker code produced on checkpoints
written by ``../shared/reference/make_checkpoints.py --seed 0``. That script writes about 2.3 GB, so it
runs once into a cache folder outside the repository (``$SADTALKER_LAB_CACHE`` or
``~/.cache/sadtalker-lab``) and is reused while complete.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SADTALKER_LAB_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
FIXTURES = REFERENCE / "fixtures"
CACHE = Path(os.environ.get("SADTALKER_LAB_CACHE", Path.home() / ".cache" / "sadtalker-lab"))

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "make_checkpoints.py").is_file(),
    reason=f"parity reference not found at {REFERENCE} (clone the project beside ../shared to run parity tests)",
)
needs_shared_data = pytest.mark.skipif(
    not (SHARED / "data").is_dir(), reason=f"optional real data not found at {SHARED / 'data'}"
)


def espeak_available() -> bool:
    """Whether eSpeak NG (the default corpus's speech) can be loaded here."""
    from sadtalker_lib.data.tts import TTSError, espeak_backend

    try:
        espeak_backend()
        return True
    except TTSError:
        return False


needs_espeak = pytest.mark.skipif(not espeak_available(), reason="eSpeak NG not installed (apt-get install espeak-ng)")


def assert_same_run(full, resumed) -> None:
    """A resumed training run ended with the uninterrupted run's weights and logged the same losses."""
    import torch

    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{k} differs after resume"
    rows = [[(r["step"], r["split"], r["loss"]) for r in run.history.rows] for run in (full, resumed)]
    assert rows[0] == rows[1]


@pytest.fixture
def one_thread():
    """Tiny ops: one torch thread is as fast and immune to oversubscription on a shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_fixture(name: str) -> dict[str, np.ndarray]:
    """One ``fixtures/<name>.npz`` as a dict of arrays (no pickles)."""
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _checkpoints_complete(folder: Path) -> bool:
    layout = json.loads((REFERENCE / "checkpoints.json").read_text())
    return (folder / ".complete").is_file() and all((folder / f).is_file() for f in layout["files"])


@pytest.fixture(scope="session")
def reference_checkpoints() -> Path:
    """Folder with every official-format checkpoint, seeded weights (seed 0), written once and cached."""
    if not (REFERENCE / "make_checkpoints.py").is_file():
        pytest.skip(f"parity reference not found at {REFERENCE}")
    folder = CACHE / "reference-checkpoints-seed0"
    if not _checkpoints_complete(folder):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(REFERENCE / "make_checkpoints.py"), str(folder), "--seed", "0"],
            check=True,
        )
        (folder / ".complete").write_text("make_checkpoints.py --seed 0\n")
    return folder


@pytest.fixture(scope="session")
def fixture():
    """Callable: ``fixture("audio")`` -> dict of the arrays in fixtures/audio.npz (skips without ../shared)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixtures not found at {FIXTURES}")
    return load_fixture
