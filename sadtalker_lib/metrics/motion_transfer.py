"""Motion transfer of a renderer, against copying the source frame (issue 14; the renderer's trivial baseline).

For (source, driving) pairs of frames and the frame a renderer generated from them:

    error_px        = mean_pairs mean_68 || L(generated) - L(driving) ||_2     L: dlib's 68 landmarks
    copy_source_px  = mean_pairs mean_68 || L(source)    - L(driving) ||_2     (the "copy_source" baseline)

in pixels of the frames as given (``image_size``). Only *moving* pairs count: those whose copy-source error is
above ``threshold_px`` (a still pair says nothing about motion). Landmarks come from
``metrics.lipsync.lip_track``: the frames are enlarged (bicubic) until the face is about 224 px wide, because
dlib misses faces under ~80 px, and the points are returned in the input's pixels. Where dlib's detector finds
no face in a generated frame, the 68 points are fitted inside the *source* frame's face box (the renderer's
input, no information about the driving frame: a renderer that outputs the source scores copy_source there),
so every moving pair is scored and two renderers are compared on the same pairs; ``found_fraction`` says how
many generated faces the detector found by itself.

Beside it, on the same moving pairs, the image inside the face region (the box around the source's and the
driving frame's landmarks, padded by ``FACE_BOX_PAD`` of its size): L1 in [0, 1] grey levels and PSNR in dB, for
the generated frame and for the source frame (copy_source); and the mouth: the inner-lip aperture of the 68 points
(``metrics.lipsync.mouth_features``, inter-ocular units, free of head motion),

    mouth_error     = mean_pairs | aperture(generated) - aperture(driving) |
    copy_mouth      = mean_pairs | aperture(source)    - aperture(driving) |

so a renderer that moves the head but not the lips scores about copy_mouth.

    ref = MotionReference(source, driving)     # landmarks of source / driving once; the moving pairs
    score = ref.score(generated)               # MotionTransferScore (error_px, copy_source_px, face_l1, ...)
    score.heldout_metrics()                    # {name: train.heldout.HeldoutMetric} for heldout.json

Frames: float [N, 3, S, S] in [0, 1] (torch or numpy) or uint8 [N, S, S, 3].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "MIN_MOTION_FRACTION",
    "FACE_BOX_PAD",
    "LANDMARK_LABEL",
    "as_uint8_frames",
    "face_landmarks",
    "face_track",
    "landmarks_in_boxes",
    "landmark_distance_px",
    "face_boxes",
    "MotionTransferScore",
    "MotionReference",
    "renderer_heldout_metrics",
]

# A pair "moves" when its copy-source landmark error is above this fraction of the frame side (project choice:
# 1 px at 64 px, 4 px at 256 px; dlib's repeat error on the same face is well below it).
MIN_MOTION_FRACTION = 1.0 / 64
FACE_BOX_PAD = 0.1  # face region: landmark box of source + driving, padded by 10 % of its width / height each side
LANDMARK_LABEL = "dlib 68 landmarks, frames enlarged as metrics.lipsync.lip_track"
MIN_DETECT_SIDE = 64  # face.detect.load_image refuses smaller images: such frames are enlarged first
MASS_LABEL = "dense-motion mask weight of the identity motion (copying the source: 1)"


def as_uint8_frames(frames) -> np.ndarray:
    """float [N, 3, S, S] in [0, 1] (torch / numpy) or uint8 [N, S, S, 3] -> uint8 [N, S, S, 3]."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    x = np.asarray(frames)
    if x.ndim != 4:
        raise ValueError(f"frames must be [N, 3, S, S] floats or [N, S, S, 3] uint8, got {x.shape}")
    if x.dtype == np.uint8:
        if x.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [N, S, S, 3], got {x.shape}")
        return x
    if x.shape[1] != 3:
        raise ValueError(f"float frames must be [N, 3, S, S] in [0, 1], got {x.shape}")
    return (np.clip(x.transpose(0, 2, 3, 1), 0, 1) * 255).round().astype(np.uint8)


def _float_frames(frames) -> np.ndarray:
    """Any accepted frames -> float32 [N, S, S, 3] in [0, 1]."""
    return as_uint8_frames(frames).astype(np.float32) / 255.0


def face_landmarks(frames, detector=None) -> np.ndarray:
    """dlib's 68 landmarks of each frame, float [N, 68, 2] in the frames' pixels (NaN where no face was found)."""
    return face_track(frames, detector)[0]


def face_track(frames, detector=None) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks float [N, 68, 2], detector boxes float [N, 4] (x1, y1, x2, y2)) in the frames' pixels, NaN where
    no face was found (as :func:`face_landmarks`)."""
    from .lipsync import lip_track

    x = as_uint8_frames(frames)
    if not len(x):
        return np.zeros((0, 68, 2)), np.zeros((0, 4))
    pre = _pre_factor(x)
    track = lip_track(_enlarge(x, pre), detector=detector)
    return track.landmarks / pre, track.boxes / pre


def _pre_factor(x: np.ndarray) -> int:
    return math.ceil(MIN_DETECT_SIDE / min(x.shape[1:3]))  # the detector refuses images under 64 px a side


def _enlarge(x: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return x
    import cv2

    return np.stack([cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC) for f in x])


def landmarks_in_boxes(frames, boxes: np.ndarray, detector=None) -> np.ndarray:
    """dlib's 68 landmarks fitted inside given face boxes (no detection), float [N, 68, 2] in the frames' pixels.

    frames: as :func:`as_uint8_frames`; boxes [N, 4] (x1, y1, x2, y2) in the frames' pixels (e.g. from
    :func:`face_track` on other frames). Each frame is enlarged until its box is about ``LIP_FACE_PX`` wide, as
    ``lip_track`` does before fitting.
    """
    from ..face.detect import default_detector
    from .lipsync import lip_upsample_factor

    x = as_uint8_frames(frames)
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (len(x), 4) or not np.isfinite(boxes).all():
        raise ValueError(f"need one finite box (x1, y1, x2, y2) per frame, got {boxes.shape} for {len(x)} frames")
    detector = detector or default_detector()
    out = np.empty((len(x), 68, 2))
    pre = _pre_factor(x) if len(x) else 1
    for i, (f, box) in enumerate(zip(x, boxes)):
        factor = pre * lip_upsample_factor(float(box[2] - box[0]) * pre)
        out[i] = detector.landmarks_in_box(_enlarge(f[None], factor)[0], box * factor) / factor
    return out


def _aperture(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip aperture [N] of landmarks [N, 68, 2] in inter-ocular units (``metrics.lipsync.mouth_features``)."""
    from .lipsync import mouth_features

    return mouth_features(landmarks)[:, 0]


def landmark_distance_px(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over the 68 points of the Euclidean distance, per frame: [N, 68, 2] x 2 -> [N] (NaN if either lacks a
    face)."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).mean(-1)


def face_boxes(*landmarks: np.ndarray, size: int, pad: float = FACE_BOX_PAD) -> np.ndarray:
    """int [N, 4] (x0, y0, x1, y1), end-exclusive: the box around all given landmark sets [N, 68, 2], padded by
    ``pad`` of its width / height on each side, clipped to the frame."""
    pts = np.concatenate([np.asarray(lm, np.float64) for lm in landmarks], axis=1)  # [N, 68 * n, 2]
    lo, hi = pts.min(1), pts.max(1)  # [N, 2]
    margin = pad * (hi - lo)
    lo = np.clip(np.floor(lo - margin), 0, size - 1).astype(int)
    hi = np.clip(np.ceil(hi + margin) + 1, 1, size).astype(int)
    return np.concatenate([lo, hi], axis=1)


def _box_l1_psnr(pred: np.ndarray, target: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair L1 and PSNR (dB, peak 1) inside each box; pred / target float [N, S, S, 3] in [0, 1]."""
    l1, psnr = np.empty(len(boxes)), np.empty(len(boxes))
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        d = pred[i, y0:y1, x0:x1] - target[i, y0:y1, x0:x1]
        l1[i] = np.abs(d).mean()
        psnr[i] = 10 * math.log10(1.0 / max(float((d**2).mean()), 1e-10))
    return l1, psnr


@dataclass
class MotionTransferScore:
    """Motion transfer of generated frames on the moving pairs of a :class:`MotionReference`.

    error_px / copy_source_px: mean landmark distance to the driving frame (generated / source frame), pixels of
    ``image_size`` frames, over all moving pairs (``found_fraction``: the share of them where dlib's detector
    found the generated face; the others are fitted in the source frame's face box). face_l1 / copy_face_l1
    ([0, 1] grey levels) and face_psnr_db / copy_face_psnr_db: the face region of the generated / source frame vs
    the driving frame, over all moving pairs. mouth_error / copy_mouth: |inner-lip aperture of the generated /
    source frame - of the driving frame| (inter-ocular units; module docstring). n_pairs: pairs given; n_moving:
    pairs with a face in source and driving and a copy-source error above ``threshold_px``. per_pair: the per-pair
    arrays (moving pairs) for plots, with ``found`` (the detector found the generated face).
    """

    error_px: float
    copy_source_px: float
    face_l1: float
    copy_face_l1: float
    face_psnr_db: float
    copy_face_psnr_db: float
    mouth_error: float
    copy_mouth: float
    n_pairs: int
    n_moving: int
    found_fraction: float
    image_size: int
    threshold_px: float
    per_pair: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def ratio(self) -> float:
        """error_px / copy_source_px (< 1: the renderer moves the face towards the driving frame)."""
        return self.error_px / self.copy_source_px if self.copy_source_px > 0 else math.inf

    def heldout_metrics(self, prefix: str = "", others: "dict[str, MotionTransferScore] | None" = None) -> dict:
        """{name: HeldoutMetric} with baseline ``copy_source``: motion_transfer_error_px, face_l1, face_psnr_db
        (names prefixed with ``prefix``, e.g. ``"heldout_people/"``). others: further baselines scored on the same
        pairs (name -> their score), added beside ``copy_source``."""
        from ..train.heldout import HeldoutMetric

        others = dict(others or {})
        where = f"{self.n_moving} of {self.n_pairs} held-out pairs with copy-source error > {self.threshold_px:.2f} px"
        size = f"px at {self.image_size} px"
        return {
            f"{prefix}motion_transfer_error_px": HeldoutMetric(
                self.error_px, {"copy_source": self.copy_source_px, **{b: s.error_px for b, s in others.items()}},
                True, f"{LANDMARK_LABEL}; {size}; {where}; generated face detected in {self.found_fraction:.0%} "
                      f"(the rest fitted in the source's face box)"),
            f"{prefix}face_l1": HeldoutMetric(
                self.face_l1, {"copy_source": self.copy_face_l1, **{b: s.face_l1 for b, s in others.items()}}, True,
                f"face region (landmark box + {FACE_BOX_PAD:.0%}); {where}"),
            f"{prefix}face_psnr_db": HeldoutMetric(
                self.face_psnr_db, {"copy_source": self.copy_face_psnr_db,
                                    **{b: s.face_psnr_db for b, s in others.items()}}, False,
                f"face region (landmark box + {FACE_BOX_PAD:.0%}); {where}"),
            f"{prefix}mouth_opening_error": HeldoutMetric(
                self.mouth_error, {"copy_source": self.copy_mouth, **{b: s.mouth_error for b, s in others.items()}},
                True, f"|inner-lip aperture (dlib, inter-ocular units) of the frame - of the driving frame|; {where}"),
        }

    @staticmethod
    def combine(scores: "list[MotionTransferScore]") -> "MotionTransferScore":
        """One score over the moving pairs of several (e.g. later frames of training people + held-out people)."""
        if not scores:
            raise ValueError("no scores to combine")
        pp = {k: np.concatenate([s.per_pair[k] for s in scores]) for k in scores[0].per_pair}
        return MotionTransferScore(
            error_px=float(pp["error_px"].mean()), copy_source_px=float(pp["copy_source_px"].mean()),
            face_l1=float(pp["face_l1"].mean()), copy_face_l1=float(pp["copy_face_l1"].mean()),
            face_psnr_db=float(pp["face_psnr_db"].mean()), copy_face_psnr_db=float(pp["copy_face_psnr_db"].mean()),
            mouth_error=float(np.nanmean(pp["mouth_error"])), copy_mouth=float(np.nanmean(pp["copy_mouth"])),
            n_pairs=sum(s.n_pairs for s in scores), n_moving=sum(s.n_moving for s in scores),
            found_fraction=float(pp["found"].mean()), image_size=scores[0].image_size,
            threshold_px=scores[0].threshold_px, per_pair=pp)

    def by_motion(self, edges_px=(2.0, 3.0, 5.0)) -> list[dict]:
        """The motion-transfer error split by how far the pair moves (its copy-source error): one row per bin
        (``lo_px`` < copy-source <= ``hi_px``; the first bin starts at ``threshold_px``, the last is open) with
        ``n``, ``error_px``, ``copy_source_px`` and ``ratio``; empty bins left out. Small motions sit inside the
        landmark noise of generated frames, large ones show whether motion is transferred at all."""
        e, c = self.per_pair["error_px"], self.per_pair["copy_source_px"]
        bounds = [self.threshold_px, *[float(x) for x in edges_px if x > self.threshold_px], math.inf]
        rows = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            m = (c > lo) & (c <= hi)
            if m.any():
                rows.append(dict(lo_px=lo, hi_px=hi, n=int(m.sum()), error_px=float(e[m].mean()),
                                 copy_source_px=float(c[m].mean()), ratio=float(e[m].mean() / c[m].mean())))
        return rows

    def summary(self) -> str:
        return (f"motion transfer {self.error_px:.3f} px vs copy-source {self.copy_source_px:.3f} px "
                f"({self.ratio:.2f}x; {self.n_moving}/{self.n_pairs} moving pairs, generated face detected "
                f"{self.found_fraction:.0%}); face L1 {self.face_l1:.4f} vs {self.copy_face_l1:.4f}; "
                f"face PSNR {self.face_psnr_db:.2f} vs {self.copy_face_psnr_db:.2f} dB; mouth opening error "
                f"{self.mouth_error:.4f} vs {self.copy_mouth:.4f}")


class MotionReference:
    """The source / driving side of a motion-transfer measurement, computed once and reused for every model.

    source / driving: frames of the pairs (see the module docstring; a source frame may repeat). threshold_px:
    the least copy-source landmark error of a moving pair (default ``MIN_MOTION_FRACTION`` x frame side).
    Attributes: ``landmarks_source`` / ``landmarks_driving`` [N, 68, 2], ``copy_error_px`` [N] (NaN without a
    face), ``moving`` bool [N], ``boxes`` int [N, 4] (face regions).
    """

    def __init__(self, source, driving, *, threshold_px: float | None = None, detector=None):
        self.source, self.driving = _float_frames(source), _float_frames(driving)
        if self.source.shape != self.driving.shape:
            raise ValueError(f"source {self.source.shape} and driving {self.driving.shape} frames differ in shape")
        self.image_size = int(self.source.shape[1])
        self.threshold_px = float(MIN_MOTION_FRACTION * self.image_size if threshold_px is None else threshold_px)
        self.detector = detector
        self.landmarks_source, self.source_boxes = face_track(as_uint8_frames(source), detector)
        self.landmarks_driving = face_landmarks(as_uint8_frames(driving), detector)
        self.copy_error_px = landmark_distance_px(self.landmarks_source, self.landmarks_driving)
        with np.errstate(invalid="ignore"):
            self.moving = np.isfinite(self.copy_error_px) & (self.copy_error_px > self.threshold_px)
        found = np.isfinite(self.copy_error_px)
        self.boxes = np.zeros((len(self.source), 4), int)
        if found.any():
            self.boxes[found] = face_boxes(self.landmarks_source[found], self.landmarks_driving[found],
                                           size=self.image_size)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def n_moving(self) -> int:
        return int(self.moving.sum())

    def score(self, generated) -> MotionTransferScore:
        """Score generated frames (same order and shape as the driving frames) on the moving pairs."""
        gen8 = as_uint8_frames(generated)
        gen = gen8.astype(np.float32) / 255.0
        if gen.shape != self.driving.shape:
            raise ValueError(f"generated frames {gen.shape} do not match the driving frames {self.driving.shape}")
        if not self.n_moving:
            raise ValueError(f"no moving pair: none of the {len(self)} pairs has a copy-source landmark error above "
                             f"{self.threshold_px:.2f} px (with a face found in source and driving)")
        m = self.moving
        lm_gen = face_landmarks(gen8[m], self.detector)
        ok = np.isfinite(lm_gen).all((1, 2))  # the detector found the generated face
        if not ok.all():  # fitted inside the source frame's face box instead (module docstring)
            lm_gen[~ok] = landmarks_in_boxes(gen8[m][~ok], self.source_boxes[m][~ok], self.detector)
        err = landmark_distance_px(lm_gen, self.landmarks_driving[m])  # [M]
        copy = self.copy_error_px[m]
        l1, psnr = _box_l1_psnr(gen[m], self.driving[m], self.boxes[m])
        cl1, cpsnr = _box_l1_psnr(self.source[m], self.driving[m], self.boxes[m])
        ap_driving = _aperture(self.landmarks_driving[m])
        mouth = np.abs(_aperture(lm_gen) - ap_driving)
        copy_mouth = np.abs(_aperture(self.landmarks_source[m]) - ap_driving)
        return MotionTransferScore(
            error_px=float(err.mean()), copy_source_px=float(copy.mean()),
            face_l1=float(l1.mean()), copy_face_l1=float(cl1.mean()),
            face_psnr_db=float(psnr.mean()), copy_face_psnr_db=float(cpsnr.mean()),
            mouth_error=float(np.nanmean(mouth)), copy_mouth=float(np.nanmean(copy_mouth)),
            n_pairs=len(self), n_moving=self.n_moving, found_fraction=float(ok.mean()),
            image_size=self.image_size, threshold_px=self.threshold_px,
            per_pair={"error_px": err, "copy_source_px": copy, "face_l1": l1, "copy_face_l1": cl1,
                      "face_psnr_db": psnr, "copy_face_psnr_db": cpsnr, "mouth_error": mouth,
                      "copy_mouth": copy_mouth, "found": ok})


def renderer_heldout_metrics(render, sets: dict, per_clip: int = 8, log=print, baselines: dict | None = None
                             ) -> dict:
    """A renderer beside copying the source on held-out segments -> {name: ``train.heldout.HeldoutMetric``}.

    render(pairs) -> (generated frames [N, 3, S, S], identity-motion mask mass [N] or None), for
    ``data.frames.FramePairs``; sets: name -> ``data.frames.FaceRenderClips`` (per clip its first frame drives
    ``per_clip`` later ones, ``first_frame_pairs``). For every set (names prefixed ``<set>/``) and over all sets
    together: full-frame ``image_l1``, ``identity_motion_mass`` (when given) and, where dlib finds the faces,
    ``motion_transfer_error_px``, ``face_l1``, ``face_psnr_db``; baseline ``copy_source`` everywhere.
    baselines: name -> a function like ``render`` whose frames are scored on the same pairs and added as a further
    baseline of every frame metric (e.g. ``still_keypoints``: the same renderer given no motion, which shows
    how much of the score the driving frame is responsible for).
    """
    from ..train.heldout import HeldoutMetric

    baselines = dict(baselines or {})
    out: dict = {}
    scores, l1s, copies, masses = [], [], [], []
    others: dict[str, list] = {b: [] for b in baselines}  # per baseline: (l1 [N], score or None) per set
    for name, clips in sets.items():
        pairs = clips.first_frame_pairs(per_clip)
        gen, mass = render(pairs)
        gen = gen.detach().cpu()
        l1 = (gen - pairs.driving).abs().flatten(1).mean(1)
        copy = (pairs.source - pairs.driving).abs().flatten(1).mean(1)
        l1s.append(l1), copies.append(copy)
        other = {b: f(pairs)[0].detach().cpu() for b, f in baselines.items()}
        other_l1 = {b: (g - pairs.driving).abs().flatten(1).mean(1) for b, g in other.items()}
        out[f"{name}/image_l1"] = HeldoutMetric(
            float(l1.mean()), {"copy_source": float(copy.mean()), **{b: float(v.mean()) for b, v in other_l1.items()}},
            True, "whole frame, [0, 1] grey levels")
        if mass is not None:
            masses.append(mass.detach().cpu())
            out[f"{name}/identity_motion_mass"] = HeldoutMetric(float(masses[-1].mean()), {"copy_source": 1.0},
                                                                True, MASS_LABEL)
        ref = MotionReference(pairs.source, pairs.driving)
        if ref.n_moving:
            score = ref.score(gen)
            scores.append(score)
            other_scores = {b: ref.score(g) for b, g in other.items()}
            out.update(score.heldout_metrics(f"{name}/", other_scores))
            log(f"{name}: {score.summary()}" + "".join(f"; {b}: {s.error_px:.3f} px ({s.ratio:.2f}x)"
                                                       for b, s in other_scores.items()))
        else:
            other_scores = {b: None for b in baselines}
            log(f"{name}: no pair with a face found in source and driving moves by more than "
                f"{ref.threshold_px:.2f} px: no landmark metrics")
        for b in baselines:
            others[b].append((other_l1[b], other_scores[b]))
    l1, copy = torch.cat(l1s), torch.cat(copies)
    total = {"image_l1": HeldoutMetric(
        float(l1.mean()), {"copy_source": float(copy.mean()),
                           **{b: float(torch.cat([x for x, _ in v]).mean()) for b, v in others.items()}},
        True, "whole frame, [0, 1] grey levels")}
    if masses:
        total["identity_motion_mass"] = HeldoutMetric(float(torch.cat(masses).mean()), {"copy_source": 1.0}, True,
                                                      MASS_LABEL)
    if scores:
        combined = {b: MotionTransferScore.combine([s for _, s in v if s is not None]) for b, v in others.items()}
        total.update(MotionTransferScore.combine(scores).heldout_metrics("", combined))
    return {**total, **out}
