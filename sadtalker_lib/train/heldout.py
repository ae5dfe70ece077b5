"""``heldout.json``: a trained stage beside its trivial baselines on held-out data (one file format, one place).

Schema (what ``sadtalker-lab train STAGE ... --out OUT`` writes to ``OUT/heldout.json``)::

    {"stage": "expnet",
     "metrics": {NAME: {"value": v, "baselines": {BASELINE: b, ...}, "lower_is_better": true,
                        "label": "stand-in / units note (optional)"}},
     "split": {"train": [...], "heldout": [...]}}   # what the numbers were measured on (clip or person ids)

A stage fills it from :meth:`sadtalker_lib.train.loop.Stage.heldout_report`; the loop writes it after the final
checkpoint. Baseline names are what the baseline *is* (``beta0_only``, ``still_head``, ``copy_source``,
``chance``, ``mean_coefficients``...), never "baseline".
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

HELDOUT_FILE = "heldout.json"


@dataclass
class HeldoutMetric:
    """One held-out number of the trained model and the same number for each trivial baseline."""

    value: float
    baselines: dict[str, float] = field(default_factory=dict)
    lower_is_better: bool = True
    label: str = ""

    def ratio(self, baseline: str) -> float:
        """value / baseline (for lower-is-better metrics: < 1 means the model beats the baseline)."""
        b = self.baselines[baseline]
        return float(self.value) / float(b) if b else math.inf

    def beats(self, baseline: str) -> bool:
        b = self.baselines[baseline]
        return self.value < b if self.lower_is_better else self.value > b

    def to_json(self) -> dict:
        out = {"value": float(self.value), "baselines": {k: float(v) for k, v in self.baselines.items()},
               "lower_is_better": bool(self.lower_is_better)}
        if self.label:
            out["label"] = self.label
        return out


@dataclass
class HeldoutReport:
    """All held-out metrics of one trained stage (see the module docstring for the file)."""

    stage: str
    metrics: dict[str, HeldoutMetric] = field(default_factory=dict)
    split: dict[str, list] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"stage": self.stage, "metrics": {k: m.to_json() for k, m in self.metrics.items()},
                "split": {k: list(v) for k, v in self.split.items()}}

    def table(self) -> str:
        """A plain-text table: metric | trained | each baseline (for terminals and notebooks)."""
        lines = []
        for name, m in self.metrics.items():
            arrow = "lower is better" if m.lower_is_better else "higher is better"
            base = ", ".join(f"{b} {v:.4g}" for b, v in m.baselines.items())
            label = f" [{m.label}]" if m.label else ""
            lines.append(f"{name}{label}: trained {m.value:.4g} | {base} ({arrow})")
        return "\n".join(lines)


def write_heldout(report: HeldoutReport, out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir) / HELDOUT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return path


def read_heldout(path: str | os.PathLike) -> HeldoutReport:
    """Read ``heldout.json`` (a folder holding it, or the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / HELDOUT_FILE
    data = json.loads(path.read_text())
    metrics = {k: HeldoutMetric(value=v["value"], baselines=dict(v.get("baselines", {})),
                                lower_is_better=bool(v.get("lower_is_better", True)), label=v.get("label", ""))
               for k, v in data["metrics"].items()}
    return HeldoutReport(stage=data.get("stage", ""), metrics=metrics, split=dict(data.get("split", {})))
