"""The only place that knows the official SadTalker release (OpenTalker/SadTalker at commit cd4c0465).

    layout.py    file names, where each network lives in them, key maps between official names and ours
    io.py        read / write checkpoints in the official layouts (safetensors, weights-only torch.load)
    registry.py  build a network by its official name; ``sadtalker_lab.json`` for configs trained here
    quirks.py    numeric quirks of the official code that parity needs (tagged ``# OFFICIAL QUIRK:`` at use)

``io`` and ``registry`` import the networks, which import quirks from here, so they are not imported by this
``__init__``: use ``from sadtalker_lib.official.io import load_official``.
"""
from .layout import KEY_MAPS, OFFICIAL_NETWORKS, SAFETENSORS_FILE, OfficialNetwork, to_official_key, to_our_key
from .quirks import *  # noqa: F401,F403  (the named quirks; see quirks.py)

__all__ = ["KEY_MAPS", "OFFICIAL_NETWORKS", "SAFETENSORS_FILE", "OfficialNetwork", "to_official_key", "to_our_key"]
