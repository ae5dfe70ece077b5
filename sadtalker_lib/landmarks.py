"""The 68-point landmark layout (iBUG-300W, dlib's order), once. Every module that picks points imports these.

    0-16 jaw line (8 = chin) | 17-26 brows | 27-35 nose | 36-47 eyes (36, 45 outer corners) | 48-59 outer lips |
    60-67 inner lips (62 / 66 the middles of the upper / lower inner lip)
"""
from __future__ import annotations

__all__ = ["NUM_LANDMARKS", "MOUTH_LANDMARKS", "CHIN_LANDMARKS", "EYE_CORNERS", "INNER_LIP_PAIRS"]

NUM_LANDMARKS = 68
MOUTH_LANDMARKS = tuple(range(48, 68))  # outer (48-59) and inner (60-67) lips
CHIN_LANDMARKS = tuple(range(5, 12))  # the jaw line around the chin, which jaw opening moves
EYE_CORNERS = (36, 45)  # outer eye corners: the face-size scale (inter-ocular distance)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower) inner-lip points facing each other
