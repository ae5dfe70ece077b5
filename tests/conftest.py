"""Shared pytest fixtures: the parity reference in ../shared, the seeded official-format checkpoints, threads.

The parity tests compare our modules with outputs the official SadTalker code produced on checkpoints
written by ``../shared/reference/make_checkpoints.py --seed 0``. That script writes about 2.3 GB, so it
runs once into the cache folder (``sadtalker_lib.paths.cache_dir()``) and is reused while complete.

Where things are comes from ``sadtalker_lib.paths`` (one place for the cache folder and ``../shared``).
Without ``../shared/reference`` the parity tests skip locally, and FAIL when ``CI`` is set: a CI run that
silently skipped them would be green without checking anything against the official code. The optional
real data (``../shared/data``) may be absent anywhere; its tests skip.

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadfile``) every worker gets ``cpu_count / workers``
torch threads, each notebook is its own work unit, and the notebooks (the longest tests) start first.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from sadtalker_lib import paths

ROOT = paths.PROJECT_ROOT
SHARED = paths.shared_dir() or Path(os.environ.get("SADTALKER_LAB_SHARED") or ROOT.parent / "shared")  # optional
REFERENCE = paths.reference_dir() or SHARED / "reference"
FIXTURES = REFERENCE / "fixtures"
CACHE = paths.cache_dir()


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty / 0 / false / no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_reference() -> Path:
    """``<shared>/reference``; skips without it locally, fails without it in CI."""
    reference = paths.reference_dir()
    if reference is None:
        msg = (f"parity reference not found (looked for {SHARED / 'reference' / 'make_checkpoints.py'}): clone the "
               "project beside ../shared or set SADTALKER_LAB_SHARED")
        if in_ci():
            pytest.fail(msg + ". CI must run the parity tests.", pytrace=False)
        pytest.skip(msg)
    return reference


@contextmanager
def file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created): one process at a time, e.g. one xdist worker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


@pytest.fixture(scope="session")
def reference():
    """``<shared>/reference`` (skips locally / fails in CI without it). Also: ``@needs_reference``."""
    return require_reference()


needs_reference = pytest.mark.usefixtures("reference")


@pytest.fixture(scope="session")
def reference_checkpoints(reference) -> Path:
    """Folder with every official-format checkpoint, seeded weights (seed 0), written once and cached.

    ``paths.reference_checkpoints`` writes them when the cache lacks a complete set; the lock makes a second
    xdist worker wait for the first one's files instead of writing the same 2.3 GB beside it.
    """
    with file_lock(CACHE / "reference-checkpoints.lock"):
        return paths.reference_checkpoints()


@pytest.fixture(scope="session")
def fixture(reference):
    """Callable: ``fixture("audio")`` -> dict of the arrays in fixtures/audio.npz."""
    if not (reference / "fixtures").is_dir():
        msg = f"parity fixtures not found at {reference / 'fixtures'}"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return load_fixture


# ---------------------------------------------------------------------------------------------
# pytest-xdist: threads per worker, one work unit per notebook, longest tests first
# ---------------------------------------------------------------------------------------------
NOTEBOOK_TESTS = "tests/test_notebooks.py"


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # an xdist worker: share the cores instead of every worker starting cpu_count threads
        n = str(max(1, (os.cpu_count() or 1) // int(workers)))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, n)  # subprocesses (eSpeak workers, torchrun, notebook kernels) inherit it
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """Notebooks first (test_notebooks.py lists them slowest first): the longest jobs start early."""
    items.sort(key=lambda item: not item.nodeid.startswith(NOTEBOOK_TESTS))  # stable sort: orders kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with each notebook as its own unit (they are independent and long), in collection order."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class NotebookSplitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if nodeid.startswith(NOTEBOOK_TESTS) else super()._split_scope(nodeid)

    config.option.loadscopereorder = False  # keep the notebooks-first order instead of "most tests first"
    return NotebookSplitScheduling(config, log)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A checkpoint folder of seeded tiny networks in the official layout (fast pipeline tests)."""
    from sadtalker_lib.official.registry import save_networks, seeded_networks, tiny_configs

    d = tmp_path_factory.mktemp("tiny_ckpt")
    save_networks(d, seeded_networks(seed=0), tiny_configs())
    return d
