"""The 68-point landmark layout (iBUG-300W, dlib's order), once. Every module that picks points imports these.

    0-16 jaw line (8 = chin) | 17-26 brows | 27-35 nose | 36-47 eyes (36, 45 outer corners) | 48-59 outer lips |
    60-67 inner lips (62 / 66 the middles of the upper / lower inner lip)
"""
from __future__ import annotations

__all__ = ["NUM_LANDMARKS", "MOUTH_LANDMARKS", "CHIN_LANDMARKS", "EYE_CORNERS", "INNER_LIP_PAIRS",
           "INNER_MOUTH_CORNERS", "LANDMARK_MIRROR"]

NUM_LANDMARKS = 68
MOUTH_LANDMARKS = tuple(range(48, 68))  # outer (48-59) and inner (60-67) lips
CHIN_LANDMARKS = tuple(range(5, 12))  # the jaw line around the chin, which jaw opening moves
EYE_CORNERS = (36, 45)  # outer eye corners: the face-size scale (inter-ocular distance)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower) inner-lip points facing each other
INNER_MOUTH_CORNERS = (60, 64)  # left and right corners of the inner lips (the mouth's inner width)
# LANDMARK_MIRROR[i]: the point that point i becomes in the horizontal mirror of the face (left and right swapped:
# jaw 0 <-> 16, brows 17 <-> 26, eyes 36 <-> 45, mouth corners 48 <-> 54, ...; the midline points map to themselves)
LANDMARK_MIRROR: tuple[int, ...] = (
    tuple(range(16, -1, -1)) + tuple(range(26, 21, -1)) + tuple(range(21, 16, -1)) + (27, 28, 29, 30)
    + tuple(range(35, 30, -1)) + (45, 44, 43, 42, 47, 46) + (39, 38, 37, 36, 41, 40)
    + tuple(range(54, 47, -1)) + tuple(range(59, 54, -1)) + tuple(range(64, 59, -1)) + (67, 66, 65)
)
assert sorted(LANDMARK_MIRROR) == list(range(NUM_LANDMARKS))
