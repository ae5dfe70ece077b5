"""Every notebook in notebooks/ runs top to bottom (papermill), with CI-sized parameters.

Each notebook's first cell (tagged ``parameters``) holds defaults meant for a user: a few minutes per notebook on
a 2-core CPU (notebooks 04 and 05 train at the CPU presets: over 20 and ~10 min). The tests run them with the small
values of ``CI_PARAMETERS`` instead (papermill injects them after that cell), so that all nine take a few minutes
together; a failing cell fails the test with the cell's error. Set ``SADTALKER_LAB_NOTEBOOK_DEFAULTS=1`` to run the
notebooks' own defaults instead.

The executed copies go to pytest's temporary folder (never over the originals). Each kernel starts in a fresh
``<tmp>/notebooks`` folder, so what the notebooks write to ``../runs`` lands in ``<tmp>/runs``, and they see no
``../checkpoints`` or ``../runs/latest`` of this checkout: the tests do not depend on what a user ran here.
The kernel is this interpreter (``sys.executable``, the project's venv), whatever other ``python3`` kernel
specs the machine has.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from conftest import ROOT, espeak_available, file_lock

NOTEBOOKS = ROOT / "notebooks"

# The default corpora of notebooks 03, 04 and 08 (they read one from CORPUS_DIR): built once per run and size by the
# ``training_corpus`` fixture, at the size the notebook asks for (their cell calls
# ``cached_default_corpus(CORPUS_DIR, N_CLIPS, SEED, size=64)``; 36 clips take ~25 s, 10 clips ~8 s).
CORPUS_CLIPS, CORPUS_HELDOUT = 10, 2  # notebooks 04 and 08
EXPNET_CORPUS_CLIPS = 36  # notebook 03: its default corpus (6 people, 4 trained on); 10 clips miss its margins

# Per notebook: the parameters the tests inject (the notebooks' own defaults are in their first cells).
# Listed slowest first: the longest notebooks start first on the xdist workers (see conftest.py).
CI_PARAMETERS: dict[str, dict] = {
    # 05 asserts that both stages learn, that the keypoints drive the frame and, at this size (~6 min, 16 people of
    # which 4 held out), that the MappingNet moves held-out faces: at most 0.9x copying the source and below the
    # renderer given no motion (CI's bar; issue #14's 0.8x is asserted at its defaults). Seeds 0-6 at this size
    # scored 0.57-0.82x (0.8x in 6 of 7), no motion 0.91-1.06x (results/facerender-motion-cpu-default-corpus.md,
    # section 34); 150 + 150 steps of 4 pairs scored up to 1.95x (section 30)
    "05_facerender_mapping": dict(N_CLIPS=18, SECONDS=2.0, FV2V_STEPS=200, MAPPING_STEPS=200, BATCH_SIZE=8,
                                  HELDOUT_PAIRS=4, MAPPING_BAR=0.9),
    # 03 asserts its own margins (error <= 0.5 x beta_0 only, mouth-opening correlation >= 0.8 on the 2 held-out people)
    # after STEPS of its 600 default steps; see the notebook's closing note for what was measured at this size
    "03_expnet_distillation": dict(N_CLIPS=EXPNET_CORPUS_CLIPS, STEPS=300, EVAL_EVERY=300,
                                   REAL_STEPS=0),  # real clips: minutes to build, off in CI
    "08_ablations": dict(N_CLIPS=CORPUS_CLIPS, N_HELDOUT=CORPUS_HELDOUT, N_TRAIN_CLIPS_POSE=4, EXP_STEPS=4,
                         POSE_STEPS=4, EXP_VARIANTS=["full", "no_ref_no_read"], POSE_VARIANTS=["full", "no_audio"],
                         SEEDS=[0], LIPSYNC_STEPS=60, KNOB_SWEEP={}, PRECISE_BN_WINDOWS=16, LIPREADER_STEPS=40,
                         KNOB_CLIPS=8, KNOB_EXP_STEPS=10, KNOB_POSE_STEPS=10),
    # 04 asserts held-out pose MSE >= 3% below a still head's at this size (seeds 0-2 measured 8.4 / 6.8 / 6.7% below)
    "04_posevae": dict(N_CLIPS=CORPUS_CLIPS, N_HELDOUT=CORPUS_HELDOUT, N_TRAIN_CLIPS=6, STEPS=200, BATCH_SIZE=8,
                       TRAIN_NO_AUDIO=False, MIN_MARGIN=0.03, MIN_KL=0.01, MIN_DIVERSITY=0.05, BA_DRAWS=1),
    "07_evaluation": dict(n_clips=8, clip_seconds=3.0, lipsync_model="notebook", lipsync_steps=500, detect_faces=False,
                          max_frames=20,
                          gen_seconds=0.4, offsync_frames=4, csim_step=10, cpbd_step=10),
    "02_3dmm_fitting": dict(ITERATIONS=30, MAX_PORTRAITS=1, VIDEO_FRAMES=3, REGRESSOR_COPIES=12, REGRESSOR_STEPS=10),
    "06_generation": dict(text="Bob bought a map.", max_seconds=0.2),
    "01_audio_features": dict(text="Lips move with speech."),
    "00_tour": dict(),
}
USES_TRAINING_CORPUS = ("03_expnet_distillation", "04_posevae", "08_ablations")
# A cell over its limit fails the test instead of stalling CI; the slowest CI cell (notebook 03's training, 300 steps)
# took ~205 s on the shared 2-core machine (400 steps: 230-275 s), the others up to ~130 s. Known third-party stall:
# nbclient sometimes does not wake up for the reply of a cell that displays an ipywidgets Output widget
# (jupyter/nbclient#312, nteract/papermill#723). Seen here in notebook 02's `explorer` cell: kernel and client both
# idle until the timeout, then the reply is read and the run goes on, so the limit also bounds what such a stall costs.
CELL_TIMEOUT_S = {"ci": 600, "defaults": 3600}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def test_every_notebook_has_ci_parameters_and_a_parameters_cell():
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if not p.name.startswith("."))
    assert names == sorted(CI_PARAMETERS), "add new notebooks to CI_PARAMETERS (and drop removed ones)"
    for name in names:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        first = nb["cells"][0]
        assert first["cell_type"] == "code" and "parameters" in first["metadata"].get("tags", []), name
        defaults = _parameter_names(name)
        unknown = set(CI_PARAMETERS[name]) - defaults
        assert not unknown, f"{name}: CI parameters {unknown} are not in its parameters cell {sorted(defaults)}"


def test_papermill_reads_every_parameter_with_its_help():
    """`papermill --help-notebook` lists each parameter with its comment as help. Its parser skips (with a warning)
    a line with more than one "=" (e.g. "<=" in the comment) and loses the parameters after it."""
    from papermill.translators import PythonTranslator

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        source = "".join(json.loads(path.read_text())["cells"][0]["source"])
        read = [p.name for p in PythonTranslator.inspect({"source": source})]
        assert sorted(read) == sorted(_parameter_names(path.stem)), f"{path.name}: papermill reads {read}"


def _parameter_names(name: str) -> set[str]:
    """The names a notebook's parameters cell (its first cell) assigns."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    return _assigned_names("".join(nb["cells"][0]["source"]))


def _assigned_names(source: str) -> set[str]:
    import ast

    return {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def _use_defaults() -> bool:
    return os.environ.get("SADTALKER_LAB_NOTEBOOK_DEFAULTS", "") not in ("", "0")


@pytest.fixture(scope="session")
def venv_kernel(tmp_path_factory):
    """A ``python3`` kernel spec for this interpreter (matplotlib on Agg), first on ``JUPYTER_PATH`` (a user's own
    ``python3`` spec could point at another Python without the project)."""
    folder = tmp_path_factory.mktemp("jupyter")
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    # MPLBACKEND=Agg: figures are built but not rendered to PNG outputs, which halves the notebooks' time and avoids
    # the widget-cell stall described at CELL_TIMEOUT_S (not seen in 3 runs of notebook 02 with Agg, 3 of 4 without)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (sadtalker-lab tests)", "language": "python", "env": {"MPLBACKEND": "Agg"}}))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(folder)] + ([old] if old else []))
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    yield "python3"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.fixture(scope="session")
def training_corpus(tmp_path_factory):
    """``get(n_clips)``: the default corpus of notebooks 03 / 04 / 08 at that size, built once for all xdist workers
    of this run."""
    if not espeak_available():
        pytest.skip("eSpeak NG not installed (apt-get install espeak-ng): the default corpus needs it")
    from sadtalker_lib.notebook import cached_default_corpus

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # shared by all workers of this run

    def get(n_clips: int):
        with file_lock(root / f"notebook-corpus-n{n_clips}.lock"):
            return cached_default_corpus(root / f"notebook-corpus-n{n_clips}", n_clips, 0, size=64)

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CI_PARAMETERS))
def test_notebook(name, tmp_path, venv_kernel, request):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    defaults = _use_defaults()
    parameters = {} if defaults else dict(CI_PARAMETERS[name])
    if name in USES_TRAINING_CORPUS and not defaults:
        parameters["CORPUS_DIR"] = str(request.getfixturevalue("training_corpus")(parameters["N_CLIPS"]))
    if "OUT_DIR" in _parameter_names(name):  # its run folder in pytest's tmp (None: a new /tmp folder per run)
        parameters["OUT_DIR"] = str(tmp_path / "out")
    cwd = tmp_path / "notebooks"
    cwd.mkdir()
    out = tmp_path / f"{name}.ipynb"
    t0 = time.time()
    run = dict(parameters=parameters, kernel_name=venv_kernel, cwd=str(cwd), progress_bar=False,
               request_save_on_cell_execute=True, execution_timeout=CELL_TIMEOUT_S["defaults" if defaults else "ci"])
    try:
        pm.execute_notebook(NOTEBOOKS / f"{name}.ipynb", out, **run)
    except PapermillExecutionError as e:
        trace = ANSI.sub("", "\n".join(e.traceback))
        pytest.fail(f"notebooks/{name}.ipynb, cell {e.cell_index} (execution count {e.exec_count}) raised "
                    f"{e.ename}: {e.evalue}\n{trace}\n(executed copy: {out})", pytrace=False)
    print(f"{name}: {time.time() - t0:.0f} s with {parameters}")
