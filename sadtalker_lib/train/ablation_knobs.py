"""Notebook 08's phenomenon knobs: change one phenomenon of the controlled default corpus and see an ablation gap move.

Each knob is a field of :class:`~sadtalker_lib.data.corpus.Phenomena` tied to the ordering of Table 3 / 4 that the
phenomenon makes matter (:data:`KNOBS`, orderings from ``ablation_tables.ORDERINGS``): the resting expressions
(``rest_spread``, ``identity_spread``) -> full ExpNet vs "w/o β0 & L_read"; the audio-irrelevant expression
(``expression_drift``, ``smiles``, ``pause_breaths``) -> lip-only targets vs real coefficients; the speech-locked
head motion (``speech_nods``, ``energy_coupling``) -> PoseVAE full vs "w/o audio"; the style-dependent free motion
(``free_motion``) -> mixed vs single fixed style. :func:`knob_gap` builds a small corpus with the knob at a strength
(cached per knob and strength), trains only the two variants of that ordering, and returns the gap (signed so
that > 0 is the paper's ordering). :class:`KnobExplorer` is its ipywidgets front end.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .ablation_tables import ORDERINGS, Ordering, ablation_data, check_orderings, table3_over_seeds, table4_over_seeds
from .ablations import EXPNET_ROWS, POSEVAE_ROWS
from .expnet import ExpNetTrainConfig
from .posevae import PoseVAETrainConfig

__all__ = ["KNOBS", "KnobSettings", "knob_corpus", "knob_gap", "KnobExplorer"]

#: Phenomena field -> the ordering whose gap it drives
KNOBS: dict[str, Ordering] = {
    "rest_spread": ORDERINGS[0], "identity_spread": ORDERINGS[0],
    "expression_drift": ORDERINGS[2], "smiles": ORDERINGS[2], "pause_breaths": ORDERINGS[2],
    "speech_nods": ORDERINGS[4], "energy_coupling": ORDERINGS[4],
    "free_motion": ORDERINGS[5],
}


@dataclass
class KnobSettings:
    """The small corpus and the short training of one knob point (seconds to a few minutes on 2 cores).

    n_clips / size / max_seconds: the corpus (``build_default_corpus``; 6 identities, 2 held out from 8 clips on).
    exp_steps / pose_steps: training steps of each of the two variants; seeds: training seeds (gap mean ± std)."""

    n_clips: int = 12
    size: int = 32
    max_seconds: float = 3.0
    exp_steps: int = 100
    pose_steps: int = 60
    seeds: tuple = (0,)
    corpus_seed: int = 0
    extra: dict = field(default_factory=dict)  # more Phenomena fields for every corpus of this explorer


def _variant(label: str, rows: dict) -> str:
    names = [k for k, v in rows.items() if v == label]
    if not names:
        raise KeyError(f"no variant for row {label!r}")
    name = names[0]
    return name[0] if isinstance(name, tuple) else name


def knob_corpus(work_dir: str | os.PathLike, knob: str, strength: float, settings: KnobSettings) -> Path:
    """The small default corpus with ``Phenomena(<knob>=strength)`` (other knobs at their defaults, or
    ``settings.extra``), built once in ``work_dir/<knob>-<strength>``."""
    from ..notebook import cached_default_corpus

    if knob not in KNOBS:
        raise KeyError(f"unknown knob {knob!r}; known: {sorted(KNOBS)}")
    folder = Path(work_dir) / f"corpus-{knob}-{float(strength):g}"
    return cached_default_corpus(folder, settings.n_clips, settings.corpus_seed, size=settings.size,
                                 max_seconds=settings.max_seconds, phenomena={**settings.extra, knob: float(strength)})


def knob_gap(knob: str, strength: float, work_dir: str | os.PathLike, settings: KnobSettings | None = None,
             scorer=None) -> dict:
    """Build (or reuse) the knob's corpus at ``strength``, train the ordering's two variants, and return
    ``{"knob", "strength", "metric", "better", "worse", "gap mean", "gap std", ...}`` (gap > 0: the paper's
    ordering holds)."""
    settings = settings or KnobSettings()
    order = KNOBS[knob]
    corpus = knob_corpus(work_dir, knob, strength, settings)
    data = ablation_data(corpus)
    runs = Path(work_dir) / f"runs-{knob}-{float(strength):g}"
    quiet = lambda *_: None  # noqa: E731
    if order.table == "3":
        variants = [_variant(order.better, EXPNET_ROWS), _variant(order.worse, EXPNET_ROWS)]
        cfg = ExpNetTrainConfig.cpu(steps=settings.exp_steps, eval_every=settings.exp_steps, checkpoint_every=0,
                                    lipreader_steps=100, precise_bn_windows=32)
        per_seed = table3_over_seeds(data, settings.seeds, cfg, runs, variants, scorer, quiet)
    else:
        variants = list(dict.fromkeys([_variant(order.better, POSEVAE_ROWS), _variant(order.worse, POSEVAE_ROWS)]))
        cfg = PoseVAETrainConfig.cpu(steps=settings.pose_steps, eval_every=settings.pose_steps, checkpoint_every=0,
                                     precise_bn_windows=32)
        per_seed = table4_over_seeds(data, settings.seeds, cfg, runs, variants, quiet)
    row = check_orderings({order.table: per_seed}, [order]).iloc[0].to_dict()
    return {"knob": knob, "strength": float(strength), **row, "held-out clips": len(data.held_clips)}


class KnobExplorer:
    """ipywidgets: pick a phenomenon (knob) and its strength, "Rebuild & retrain" adds a point (the gap of the
    ordering that phenomenon drives) and redraws gap vs strength. ``points``: every measured point so far."""

    def __init__(self, work_dir: str | os.PathLike, settings: KnobSettings | None = None, scorer=None):
        self.work_dir, self.settings, self.scorer = Path(work_dir), settings or KnobSettings(), scorer
        self.points = pd.DataFrame()

    def measure(self, knob: str, strength: float) -> dict:
        """One point (:func:`knob_gap`), added to :attr:`points`."""
        if self.scorer is None and KNOBS[knob].table == "3":
            from .ablation_tables import lip_sync_scorer

            self.scorer = lip_sync_scorer(lambda *_: None)
        row = knob_gap(knob, strength, self.work_dir, self.settings, self.scorer)
        self.points = pd.concat([self.points, pd.DataFrame([row])], ignore_index=True)
        return row

    def draw(self, knob: str):
        """Gap (mean ± std over seeds) vs strength for ``knob``; a dashed line at 0 (above: the paper's order)."""
        import matplotlib.pyplot as plt

        order = KNOBS[knob]
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        pts = self.points[self.points["knob"] == knob].sort_values("strength") if len(self.points) else self.points
        if len(pts):
            ax.errorbar(pts["strength"], pts["gap mean"], yerr=pts["gap std"], marker="o", capsize=3)
        else:
            ax.text(0.5, 0.5, "no point yet: press 'Rebuild & retrain'", ha="center", transform=ax.transAxes)
        ax.axhline(0.0, color="gray", ls="--", lw=1)
        ax.set_xlabel(f"Phenomena.{knob} (corpus strength)")
        ax.set_ylabel("gap (> 0: as the paper)")
        ax.set_title(f"{order.claim}\n{order.metric}", fontsize=9)
        plt.tight_layout()
        plt.show()
        return fig

    def widget(self):
        """Dropdown "phenomenon", slider "strength", button "Rebuild & retrain", and the plot."""
        import ipywidgets as widgets

        knob_w = widgets.Dropdown(options=list(KNOBS), value="expression_drift", description="phenomenon",
                                  style={"description_width": "initial"})
        strength_w = widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.25, description="strength")
        run_w = widgets.Button(description="Rebuild & retrain", icon="refresh", layout=widgets.Layout(width="auto"))
        plot_w = widgets.Output()

        def redraw(*_):
            plot_w.clear_output(wait=True)
            with plot_w:
                self.draw(knob_w.value)

        def on_run(_):
            run_w.disabled, done = True, False
            with plot_w:
                print(f"building the corpus with {knob_w.value}={strength_w.value:g} and training 2 variants ...")
                self.measure(knob_w.value, strength_w.value)
                done = True
            run_w.disabled = False
            if done:
                redraw()

        knob_w.observe(redraw, "value")
        run_w.on_click(on_run)
        redraw()
        return widgets.VBox([widgets.HBox([knob_w, strength_w, run_w]), plot_w])
