"""Exponential moving averages of trained weights (Polyak averaging), the loop's ``TrainConfig.ema_decay``.

After every step of an optimizer named in ``ema_decay``, each module whose parameters that optimizer trains is
folded into its average: ``avg <- d * avg + (1 - d) * live`` for every floating tensor of the state dict (weights
and BatchNorm statistics; integer buffers are copied), with ``d = min(decay, (1 + n) / (10 + n))`` after ``n``
earlier updates (the warm-up of TensorFlow's ``ExponentialMovingAverage``), so that a short run's average is not
held at the initial weights. The loop evaluates the averages (held-out rows) and, at the last step, loads them into
the live modules, so the exported files, ``heldout.json`` and the final checkpoint hold the averaged weights. The
averages and their update counts travel in every checkpoint (``state_dicts["ema/<module>"]``, ``["ema/updates"]``),
so a killed and resumed run ends bit-exact. A checkpoint without them (written with ``ema_decay`` empty) starts the
averages at its weights.

Averaging the last ~1 / (1 - decay) updates removes most of the step-to-step noise that a large constant learning
rate leaves in the weights; the face-vid2vid detectors of the CPU preset regress keypoint motion measurably better
from their averaged weights (results/facerender-motion-cpu-default-corpus.md, section 24). Neither SadTalker nor
face-vid2vid keeps an average: the default is off.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Mapping

import torch
from torch import nn

PREFIX = "ema/"  # checkpoint key of a module's average: state_dicts["ema/<module>"]
COUNTS = PREFIX + "updates"  # state_dicts["ema/updates"]: {optimizer name: updates folded in so far}


def warmed_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates + 1``: ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The averages of the modules that the optimizers named in ``decay`` train.

    modules: the stage's modules by name; optimizers: its (unprepared) optimizers by name; decay: optimizer name ->
    decay per step of that optimizer, in [0, 1). A module trained by two named optimizers is folded in after each.
    """

    def __init__(self, modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                 decay: Mapping[str, float]):
        unknown = sorted(set(decay) - set(optimizers))
        if unknown:
            raise ValueError(f"ema_decay names optimizer(s) {unknown}; this stage's optimizers are "
                             f"{sorted(optimizers)}")
        bad = {n: d for n, d in decay.items() if not 0.0 <= float(d) < 1.0}
        if bad:
            raise ValueError(f"ema_decay values are decays per step in [0, 1), got {bad}")
        self.decay = {n: float(d) for n, d in decay.items()}
        self.keys: dict[str, list[str]] = {}
        for name in self.decay:
            trained = {id(p) for group in optimizers[name].param_groups for p in group["params"]}
            self.keys[name] = [k for k, m in modules.items() if any(id(p) in trained for p in m.parameters())]
        self.live = {k: modules[k] for keys in self.keys.values() for k in keys}
        self.average = {k: copy.deepcopy(m).requires_grad_(False) for k, m in self.live.items()}
        self.updates = {name: 0 for name in self.decay}

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """The averages under their checkpoint names (``ema/<module>``) and the update counts (``ema/updates``)."""
        return {**{PREFIX + k: m for k, m in self.average.items()}, COUNTS: _Counts(self.updates)}

    def restore(self, checkpoint: Mapping) -> None:
        """Averages from a checkpoint (:func:`runstate.restore_training_state`'s return); absent there: the live
        weights just restored (a checkpoint written without averaging)."""
        saved = checkpoint.get("state_dicts", {})
        for k, m in self.average.items():
            m.load_state_dict(saved.get(PREFIX + k, self.live[k].state_dict()))
        counts = saved.get(COUNTS, {})
        self.updates = {n: int(counts[n]) if n in counts else 0 for n in self.decay}

    def to(self, device: torch.device) -> None:
        for m in self.average.values():
            m.to(device)

    @torch.no_grad()
    def update(self, optimizer: str) -> None:
        """Fold the live weights of what ``optimizer`` trains into their averages (call after its step)."""
        if optimizer not in self.decay:
            return
        d = warmed_decay(self.decay[optimizer], self.updates[optimizer])
        self.updates[optimizer] += 1
        for k in self.keys[optimizer]:
            for avg, live in zip(self.average[k].state_dict().values(), self.live[k].state_dict().values()):
                if avg.dtype.is_floating_point:
                    avg.lerp_(live.to(avg.dtype), 1.0 - d)
                else:
                    avg.copy_(live)

    @contextlib.contextmanager
    def swapped_in(self):
        """The averages in the live modules for the duration (e.g. a held-out evaluation), the live weights after."""
        kept = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in self.live.items()}
        self.load_into_live()
        try:
            yield
        finally:
            for k, m in self.live.items():
                m.load_state_dict(kept[k])

    @torch.no_grad()
    def load_into_live(self) -> None:
        """Replace the live weights by their averages (the loop does this at the last step)."""
        for k, m in self.live.items():
            m.load_state_dict(self.average[k].state_dict())


class _Counts(nn.Module):
    """The update counts as buffers (a state dict, what ``save_training_checkpoint`` writes for non-official names)."""

    def __init__(self, counts: Mapping[str, int]):
        super().__init__()
        for name, n in counts.items():
            self.register_buffer(name, torch.tensor(int(n)))
