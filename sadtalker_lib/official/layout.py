"""Everything that ties SadTalker Lab to the *official* SadTalker release, in one place.

* Where each network lives in the official checkpoint files (``OFFICIAL_NETWORKS``).
* The explicit key maps between official state-dict keys and ours (``KEY_MAPS``): a list of
  ``(official_prefix, our_prefix)`` pairs per network; the first matching pair renames a key, in either
  direction, so every map is invertible and saving in the official layout uses the same table.
* The one official quirk that lives in the key maps (``HE_ESTIMATOR_SWAPPED_HEADS``). Every other quirk
  lives beside its single user, tagged (see ``official/__init__.py``).

Facts from OpenTalker/SadTalker at commit cd4c0465 (see ../shared/reference/MANIFEST.md).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OfficialNetwork:
    """Where one network's weights are stored in the official files.

    safetensors_prefix: prefix of its keys in ``SadTalker_V0.0.2_{256,512}.safetensors`` (None: not there).
    pth_file / pth_key: the old-version torch file and its top-level key holding the state dict.
    """

    name: str
    safetensors_prefix: str | None
    pth_file: str
    pth_key: str
    pth_epoch: int | None  # the official .pth loaders return checkpoint["epoch"]; None: no epoch key


OFFICIAL_NETWORKS: dict[str, OfficialNetwork] = {
    n.name: n
    for n in [
        OfficialNetwork("audio2exp", "audio2exp.", "auido2exp_00300-model.pth", "model", 300),
        OfficialNetwork("audio2pose", "audio2pose.", "auido2pose_00140-model.pth", "model", 140),
        OfficialNetwork("face_3drecon", "face_3drecon.", "epoch_20.pth", "net_recon", None),
        OfficialNetwork("generator", "generator.", "facevid2vid_00189-model.pth.tar", "generator", 189),
        # Quirk: the safetensors prefix is "kp_extractor." but the .pth.tar key is "kp_detector".
        OfficialNetwork("kp_extractor", "kp_extractor.", "facevid2vid_00189-model.pth.tar", "kp_detector", 189),
        # Quirk: the HEEstimator is never loaded in safetensors mode and never called at inference.
        OfficialNetwork("he_estimator", None, "facevid2vid_00189-model.pth.tar", "he_estimator", 189),
        # Quirk: the mapping nets are not in the safetensors file; always read from these .pth.tar files.
        OfficialNetwork("mapping_crop", None, "mapping_00229-model.pth.tar", "mapping", 229),
        OfficialNetwork("mapping_full", None, "mapping_00109-model.pth.tar", "mapping", 109),
    ]
}

SAFETENSORS_FILE = "SadTalker_V0.0.2_{size}.safetensors"

# OFFICIAL QUIRK: src/facerender/modules/keypoint_detector.py HEEstimator.forward returns ``yaw = self.fc_roll(out)``
# and ``roll = self.fc_yaw(out)``: the layers named fc_yaw / fc_roll feed the opposite angles (fc_pitch is right).
# Our HEEstimator names its heads after what they predict, so KEY_MAPS["he_estimator"] swaps the two names
# (official fc_roll.* <-> our fc_yaw.*). The MappingNet (src/facerender/modules/mapping.py) has no such swap.
HE_ESTIMATOR_SWAPPED_HEADS = {"yaw": "fc_roll", "roll": "fc_yaw"}  # output angle -> official layer name

# ---------------------------------------------------------------------------------------------
# Key maps: (official_prefix, our_prefix). Keys matching no pair keep their name (identity).
# Each network's owner edits only its own list.
# ---------------------------------------------------------------------------------------------
KEY_MAPS: dict[str, list[tuple[str, str]]] = {
    "audio2exp": [],
    "audio2pose": [  # our PoseVAE names its parts after the paper; inner block names stay official
        ("audio_encoder.audio_encoder.", "audio_encoder."),
        ("netG.encoder.", "encoder."),
        ("netG.decoder.", "decoder."),
        ("netD_motion.", "discriminator."),
    ],
    "face_3drecon": [],
    "generator": [("resblocks_3d.3dr", "resblocks_3d.")],  # official Sequential names "3dr0".. -> 0..
    "kp_extractor": [("predictor.down_blocks.down", "predictor.down_blocks."),  # "down0".. -> 0..
                     ("predictor.up_blocks.up", "predictor.up_blocks.")],  # "up0".. -> 0..
    "he_estimator": [(f"{HE_ESTIMATOR_SWAPPED_HEADS['yaw']}.", "fc_yaw."),  # the swapped heads (above)
                     (f"{HE_ESTIMATOR_SWAPPED_HEADS['roll']}.", "fc_roll.")],
    "mapping_crop": [],
    "mapping_full": [],
}


def _rename(key: str, pairs: list[tuple[str, str]], reverse: bool) -> str:
    for official, ours in pairs:
        src, dst = (ours, official) if reverse else (official, ours)
        if key.startswith(src):
            return dst + key[len(src):]
    return key


def to_our_key(network: str, official_key: str) -> str:
    """Official state-dict key (section prefix already removed) -> our module's key."""
    return _rename(official_key, KEY_MAPS[network], reverse=False)


def to_official_key(network: str, our_key: str) -> str:
    """Our module's key -> the official state-dict key (without the section prefix)."""
    return _rename(our_key, KEY_MAPS[network], reverse=True)
