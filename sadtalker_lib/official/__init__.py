"""The only place that knows the official SadTalker release (OpenTalker/SadTalker at commit cd4c0465).

    layout.py    file names, where each network lives in them, key maps between official names and ours
    io.py        read / write checkpoints in the official layouts (safetensors, weights-only torch.load: the
                 only torch.load of the package)
    registry.py  build a network by its official name; ``sadtalker_lab.json`` for configs trained here

The numeric quirks of the official code live beside their single user, each tagged with a comment that starts
with the tag below and says where the official code does it, so ``grep -rn "OFFICIAL QUIRK" sadtalker_lib``
lists them all (this line included).

``io`` and ``registry`` import the networks, so they are not imported by this ``__init__``: use
``from sadtalker_lib.official.io import load_official``.
"""
from .layout import (HE_ESTIMATOR_SWAPPED_HEADS, KEY_MAPS, OFFICIAL_NETWORKS, SAFETENSORS_FILE, OfficialNetwork,
                     to_official_key, to_our_key)

__all__ = ["HE_ESTIMATOR_SWAPPED_HEADS", "KEY_MAPS", "OFFICIAL_NETWORKS", "SAFETENSORS_FILE", "OfficialNetwork",
           "to_official_key", "to_our_key"]
