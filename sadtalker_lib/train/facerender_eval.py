"""FaceRender beyond held-out pairs: cross-identity animation, and the talking chain of a generated video.

Cross-identity animation (issue 14): a held-out portrait A (one frame) driven by the coefficients of another
person B (a clip), through the inference path (``steps.windows.driving_windows`` -> ``steps.render.render_stream``):

* identity kept: CSIM [dlib] (``metrics.csim``) of the generated frames against A's frame, beside
  ``copy_source`` (A's frame itself: the ceiling) and ``copy_driving`` (B's frames: another person, the floor);
* motion transferred: the frames of A must move as B's frames move. The faces differ in shape, so the absolute
  landmarks are not comparable; the *motion* is. Two measures, B's landmarks scaled by the ratio of the
  inter-ocular distances (s = A / B):

  - issue 14's motion-transfer error, as for same-person pairs (``metrics.motion_transfer``): A's frame moved by
    B's motion since B's first frame is the target, ``T_t = La + s (Lb_t - Lb_0)``; on the frames where copying
    A's frame errs by more than the threshold (``MIN_MOTION_FRACTION`` x frame side):

        moving_error_px = mean_t mean_68 || Lg_t - T_t ||,   moving_copy_source_px = mean_t mean_68 || La - T_t ||

  - over every frame, each clip's landmarks minus their mean over the clip (:func:`relative_motion_error`):

        motion_error_px       = mean_t mean_68 || (Lg_t - mean Lg) - s (Lb_t - mean Lb) ||
        copy_source (no motion: the frame of A repeated) = mean_t mean_68 || s (Lb_t - mean Lb) ||

    also over the 20 mouth points (48-67) alone (``mouth_*``).

  B's coefficients drive A as the official ``--ref_pose`` option moves a pose (``audio2coeff.add_reference_motion``):
  ``driving="relative"`` (the default) gives A's own coefficients plus B's motion since B's first frame, for the
  expression too (as ExpNet adds speech to the source's beta_0); ``"absolute"`` feeds B's coefficients as they are
  (B's head pose and resting expression on A's face).

The talking chain (issue 14, item 5): where a generated video's mouth stops following the speech, link by link —

1. ExpNet: the inner-lip gap of the generated expression coefficients (``morphable.render.mouth_opening`` on
   the face model's landmarks) and its correlation with the audio's loudness (RMS per video frame);
2. MappingNet: the driven keypoints' motion over time and their largest correlation with that gap;
3. renderer: the inner-lip aperture of the rendered frames (dlib, ``metrics.lipsync.mouth_features``) and its
   correlation with the gap; the same for the inner mouth width (the stand-in of link 4 scores it too);
4. the lip-sync metric (``metrics.lipsync``) on the video and on a copy with its audio delayed 8 frames
   (:func:`lip_sync_rows`, :func:`lip_sync_check`); beside it the *reference renderer*: the same coefficients
   rendered at the same frame size by the default corpus' landmark-warp renderer (``data.render``, no network;
   :func:`reference_frames`). When the reference lip-syncs and the video does not, links 2-3 (MappingNet +
   face-vid2vid) lose the mouth; when neither does, the coefficients (link 1) or the frame size do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..landmarks import MOUTH_LANDMARKS
from ..coeffs import MOTION_DIM, POSE
from ..metrics.video_io import AUDIO_RATE

__all__ = ["MOUTH_POINTS", "CrossIdentityResult", "relative_motion_error", "transferred_motion_error",
           "DRIVING_MODES", "driving_coefficients", "animate", "cross_identity_animation", "cross_identity_metrics",
           "TalkingChain", "talking_chain", "mouth_extremes", "plot_talking_chain", "mouth_keypoint_sensitivity",
           "SYNC_CHECK_SHIFT_FRAMES", "GENERATED", "REFERENCE", "shifted_row", "lip_sync_rows", "lip_sync_check",
           "reference_frames", "reference_lip_sync_rows"]

MOUTH_POINTS = list(MOUTH_LANDMARKS)  # index of the lips in [..., 68, 2] arrays
CSIM_FACE_PX = 256  # frames are enlarged to this side (bicubic) before dlib's face descriptor (project choice)
AUDIO_SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
SYNC_CHECK_SHIFT_FRAMES = 8  # a video is also scored with its audio delayed by this much (issue 14's check)
DRIVING_MODES = ("relative", "absolute")  # how person B's coefficients drive portrait A (module docstring)
CHAIN_MAX_LAG = 5  # frames searched for the rendered mouth's lag behind its coefficients (0.2 s each way)
GENERATED = "generated video"  # lip-sync row names
REFERENCE = "reference renderer (same coefficients, landmark warp, no network)"


def _iod(lm: np.ndarray) -> np.ndarray:
    """Inter-ocular distance (eye centres) of [..., 68, 2] landmarks -> [...]."""
    return np.linalg.norm(lm[..., 36:42, :].mean(-2) - lm[..., 42:48, :].mean(-2), axis=-1)


def relative_motion_error(generated: np.ndarray, driving: np.ndarray, source: np.ndarray | None = None,
                          points=slice(None)) -> tuple[float, float]:
    """(motion error px, copy-source px) of the module docstring; landmarks [T, 68, 2] (NaN rows: no face,
    skipped), ``source`` [68, 2] (A's frame; for the scale, default: the generated frames' mean)."""
    g, d = np.asarray(generated, np.float64), np.asarray(driving, np.float64)
    ok = np.isfinite(g).all((1, 2)) & np.isfinite(d).all((1, 2))
    if ok.sum() < 2:
        raise ValueError(f"need >= 2 frames with a face in both the generated and the driving frames, got {ok.sum()}")
    g, d = g[ok], d[ok]
    ref = np.nanmean(g, 0) if source is None else np.asarray(source, np.float64)
    s = float(_iod(ref) / np.mean(_iod(d)))
    dg, dd = g - g.mean(0), s * (d - d.mean(0))
    err = np.linalg.norm(dg[:, points] - dd[:, points], axis=-1).mean()
    copy = np.linalg.norm(dd[:, points], axis=-1).mean()
    return float(err), float(copy)


def transferred_motion_error(generated: np.ndarray, driving: np.ndarray, source: np.ndarray, threshold_px: float,
                             points=slice(None)) -> tuple[float, float, int]:
    """Issue 14's motion-transfer error across identities (module docstring): generated [T, 68, 2], driving (B)
    [T, 68, 2], source (A's frame) [68, 2] -> (error px, copy-source px, number of moving frames), on the frames
    where copying A errs by more than ``threshold_px``; NaN rows (no face) are skipped. ValueError without a face in
    A or in B's first frame."""
    g, d, a = (np.asarray(x, np.float64) for x in (generated, driving, source))
    if not (np.isfinite(a).all() and np.isfinite(d[0]).all()):
        raise ValueError("need a face in the source frame and in the first driving frame (the motion's origin)")
    s = float(_iod(a) / _iod(d[0]))
    target = a[None] + s * (d - d[:1])
    copy = np.linalg.norm(target[:, points] - a[None, points], axis=-1).mean(-1)
    err = np.linalg.norm(g[:, points] - target[:, points], axis=-1).mean(-1)
    with np.errstate(invalid="ignore"):
        moving = np.isfinite(copy) & np.isfinite(err) & (copy > threshold_px)
    if not moving.any():
        return math.nan, math.nan, 0
    return float(err[moving].mean()), float(copy[moving].mean()), int(moving.sum())


def driving_coefficients(source_coeffs, driving_coeffs, driving: str = "relative") -> np.ndarray:
    """Coefficients [T, 70] that drive portrait A (``source_coeffs`` [>= 70]) with B's ``driving_coeffs``
    [T, >= 70]: ``"relative"``, A's coefficients + B's motion since its first frame (expression and pose); or
    ``"absolute"``, B's as they are."""
    from ..audio2coeff import add_reference_motion

    if driving not in DRIVING_MODES:
        raise ValueError(f"driving must be one of {DRIVING_MODES}, got {driving!r}")
    drv = np.asarray(driving_coeffs, np.float32)[:, :MOTION_DIM]
    if driving == "absolute":
        return drv
    src = np.repeat(np.asarray(source_coeffs, np.float32)[None, :MOTION_DIM], len(drv), 0)
    return add_reference_motion(src, drv, slice(0, MOTION_DIM))


@torch.no_grad()
def animate(renderer, mapping, source_frame, source_coeffs, driving_coeffs, batch_size: int = 8) -> torch.Tensor:
    """The inference render loop: frame ``source_frame`` ([3, S, S] / [1, 3, S, S] float in [0, 1], or uint8
    [S, S, 3]) with its coefficients [>= 70] driven by coefficients [T, >= 70] -> frames float [T, 3, S, S].
    renderer: ``FaceVid2VidNets``; mapping: the 70-channel MappingNet (both put in eval mode)."""
    from ..steps.render import render_stream
    from ..steps.windows import driving_windows
    from ..wrapper import Models

    renderer.eval()
    mapping.eval()
    src = torch.as_tensor(np.asarray(source_frame)) if not torch.is_tensor(source_frame) else source_frame
    if src.dtype == torch.uint8:
        src = src.permute(2, 0, 1).float() / 255.0
    src = src.reshape(1, *src.shape[-3:]).float()
    models = Models(kp_detector=renderer.kp_extractor, generator=renderer.generator, mapping_crop=mapping)
    coeffs = np.asarray(driving_coeffs, np.float32)[:, :MOTION_DIM]
    windows = driving_windows(coeffs, np.asarray(source_coeffs, np.float32)[:MOTION_DIM])
    return torch.cat([b.frames for b in render_stream(models, src, windows, batch_size=batch_size, progress=False)])


def _enlarge(frames_u8: np.ndarray, side: int = CSIM_FACE_PX) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC) for f in frames_u8])


@dataclass
class CrossIdentityResult:
    """Portrait A driven by person B's coefficients (module docstring). csim: generated vs A's frame;
    csim_copy_source: A's frame vs itself (after the same resizing); csim_copy_driving: B's frames vs A's frame.
    moving_error_px / moving_copy_source_px: issue 14's motion-transfer error on the ``n_moving`` frames that move
    (module docstring); motion_error_px / motion_copy_source_px (and the mouth_ pair): landmark motion about the
    clip means, every frame; px of the frames (``image_size``); NaN where dlib found no face (``notes`` say why).
    driving: how B's coefficients drove A (``DRIVING_MODES``). frames: the generated frames uint8 [T, S, S, 3]."""

    csim: float
    csim_copy_source: float
    csim_copy_driving: float
    motion_error_px: float
    motion_copy_source_px: float
    mouth_error_px: float
    mouth_copy_source_px: float
    n_frames: int
    image_size: int
    moving_error_px: float = math.nan
    moving_copy_source_px: float = math.nan
    n_moving: int = 0
    driving: str = "relative"
    source_id: str = ""
    driving_id: str = ""
    csim_label: str = "dlib"
    notes: list = field(default_factory=list)
    frames: np.ndarray | None = field(default=None, repr=False)

    @property
    def motion_ratio(self) -> float:
        return self.motion_error_px / self.motion_copy_source_px if self.motion_copy_source_px else math.inf

    @property
    def moving_ratio(self) -> float:
        """Issue 14's motion-transfer error over copying the source (NaN without a moving frame)."""
        return self.moving_error_px / self.moving_copy_source_px if self.n_moving else math.nan

    def summary(self) -> str:
        return (f"{self.source_id} driven by {self.driving_id} ({self.driving} coefficients, {self.n_frames} frames, "
                f"{self.image_size} px): CSIM [{self.csim_label}] {self.csim:.3f} (copy-source "
                f"{self.csim_copy_source:.3f}, the driving person {self.csim_copy_driving:.3f}); motion-transfer error "
                f"{self.moving_error_px:.3f} px vs copy-source {self.moving_copy_source_px:.3f} px "
                f"({self.moving_ratio:.2f}x, {self.n_moving} moving frames); motion about the clip means, every frame: "
                f"{self.motion_error_px:.3f} vs {self.motion_copy_source_px:.3f} px ({self.motion_ratio:.2f}x), mouth "
                f"{self.mouth_error_px:.3f} vs {self.mouth_copy_source_px:.3f} px")


def cross_identity_animation(renderer, mapping, source_frame, source_coeffs, driving_frames, driving_coeffs, *,
                             source_id: str = "", driving_id: str = "", embedder=None,
                             csim_step: int = 1, driving: str = "relative") -> CrossIdentityResult:
    """Portrait A (``source_frame`` uint8 [S, S, 3] + its coefficients) driven by person B's coefficients
    [T, >= 70]; ``driving_frames`` uint8 [T, S, S, 3] are B's real frames (for the motion and the CSIM floor);
    driving: ``"relative"`` or ``"absolute"`` (:func:`driving_coefficients`)."""
    from ..metrics.csim import DlibFaceEmbedder, csim
    from ..metrics.faces import NoFaceError
    from ..metrics.motion_transfer import MIN_MOTION_FRACTION, as_uint8_frames, face_landmarks

    src = np.asarray(source_frame, np.uint8)
    drv = np.asarray(driving_frames, np.uint8)
    coeffs = driving_coefficients(source_coeffs, driving_coeffs, driving)
    gen = as_uint8_frames(animate(renderer, mapping, src, source_coeffs, coeffs))
    embedder = embedder or DlibFaceEmbedder()
    big_src = _enlarge(src[None])[0]
    notes = []
    sims = {}
    for name, x in (("gen", gen), ("copy", src[None]), ("drv", drv)):
        try:
            sims[name] = csim(big_src, _enlarge(x), embedder, step=csim_step).value
        except NoFaceError as e:  # e.g. a blurred generated face dlib does not find: NaN, said in notes
            sims[name] = math.nan
            notes.append(f"CSIM ({name}): {e}")
    lm_src = face_landmarks(src[None])[0]
    lm_gen, lm_drv = face_landmarks(gen), face_landmarks(drv)
    try:
        err, copy = relative_motion_error(lm_gen, lm_drv, lm_src)
        merr, mcopy = relative_motion_error(lm_gen, lm_drv, lm_src, MOUTH_POINTS)
    except ValueError as e:
        err = copy = merr = mcopy = math.nan
        notes.append(f"motion: {e}")
    try:
        move_err, move_copy, n_moving = transferred_motion_error(lm_gen, lm_drv, lm_src,
                                                                 MIN_MOTION_FRACTION * src.shape[0])
        if not n_moving:
            notes.append("motion-transfer error: no driving frame moves by more than the threshold")
    except ValueError as e:
        move_err, move_copy, n_moving = math.nan, math.nan, 0
        notes.append(f"motion-transfer error: {e}")
    return CrossIdentityResult(csim=sims["gen"], csim_copy_source=sims["copy"], csim_copy_driving=sims["drv"],
                               motion_error_px=err, motion_copy_source_px=copy, mouth_error_px=merr,
                               mouth_copy_source_px=mcopy, n_frames=len(gen), image_size=int(src.shape[0]),
                               moving_error_px=move_err, moving_copy_source_px=move_copy, n_moving=n_moving,
                               driving=driving,
                               source_id=source_id, driving_id=driving_id, csim_label=embedder.label, notes=notes,
                               frames=gen)


def _spread(n_items: int, n: int) -> list[int]:
    """Up to ``n`` positions spread evenly over ``n_items`` (first and last included)."""
    return sorted({int(round(x)) for x in np.linspace(0, n_items - 1, min(n, n_items))}) if n_items else []


def cross_identity_metrics(renderer, mapping, portraits, drivers, n: int = 3, *, csim_step: int = 5,
                           log=print) -> dict:
    """Cross-identity rows for ``heldout.json``: the first frames of ``n`` clips of ``portraits`` (held-out people,
    ``data.frames.FaceRenderClips``) each driven relatively by ``n`` segments of ``drivers`` (other people) through
    :func:`cross_identity_animation` -> {name: ``train.heldout.HeldoutMetric``}:

    * ``cross_identity/motion_transfer_error_px``: issue 14's motion-transfer error pooled over the moving frames of
      every pair (baseline ``copy_source``: the portrait repeated);
    * ``cross_identity/csim``: CSIM [dlib] of the generated frames against the portrait, higher is better
      (baselines ``copy_source``: the portrait itself, the ceiling; ``driving_person``: the driver's own frames).

    A row is left out when no pair gives it a value (no face found, or no driving frame that moves)."""
    from .heldout import HeldoutMetric

    results = [cross_identity_animation(renderer, mapping, portraits.frames[i][0].permute(1, 2, 0).numpy(),
                                        portraits.coeffs[i][0], drivers.frames[j].permute(0, 2, 3, 1).numpy(),
                                        drivers.coeffs[j], source_id=portraits.ids[i], driving_id=drivers.ids[j],
                                        csim_step=csim_step)
               for i in _spread(len(portraits), n) for j in _spread(len(drivers), n)]
    out = {}
    moving = [c for c in results if c.n_moving and math.isfinite(c.moving_error_px)]
    if moving:
        frames = sum(c.n_moving for c in moving)
        err = sum(c.moving_error_px * c.n_moving for c in moving) / frames
        copy = sum(c.moving_copy_source_px * c.n_moving for c in moving) / frames
        out["cross_identity/motion_transfer_error_px"] = HeldoutMetric(
            err, {"copy_source": copy}, True,
            f"held-out portraits driven by other people's coefficients (relative): {len(moving)} of {len(results)} "
            f"pairs, {frames} moving frames")
    found = [c for c in results if math.isfinite(c.csim) and math.isfinite(c.csim_copy_driving)]
    if found:
        mean = lambda key: float(np.mean([getattr(c, key) for c in found]))  # noqa: E731
        out["cross_identity/csim"] = HeldoutMetric(
            mean("csim"), {"copy_source": mean("csim_copy_source"), "driving_person": mean("csim_copy_driving")},
            False, f"CSIM [{found[0].csim_label}] against the portrait (copy_source: the portrait itself, the "
                   f"ceiling), {len(found)} of {len(results)} pairs")
    log(f"cross-identity: {len(results)} pairs; " + "; ".join(
        f"{k.split('/')[1]} {m.value:.3f} (" + ", ".join(f"{b} {v:.3f}" for b, v in m.baselines.items()) + ")"
        for k, m in out.items()) if out else f"cross-identity: {len(results)} pairs, no face or no motion to score")
    return out


# ---------------------------------------------------------------------------------------------
# The talking chain of a generated video (item 5)
# ---------------------------------------------------------------------------------------------
def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-12 or b[ok].std() < 1e-12:
        return 0.0
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


@dataclass
class TalkingChain:
    """Per link of the chain (module docstring), over the T frames of a generated video.

    coeff_opening [T]: inner-lip gap of the expression coefficients (face-model landmarks, eye-corner units);
    audio_rms [T]; keypoint_motion: mean std over time of the driven keypoints (keypoint units);
    keypoint_corr: the largest |r| of one keypoint coordinate with coeff_opening; rendered_aperture [T]: dlib
    inner-lip aperture of the frames (inter-ocular units, NaN without a face); lip_sync: row -> summary
    (``metrics.lipsync.lip_sync_summary``, or {"error": ...}); coeff_width [T] / rendered_width [T]: the inner
    mouth width of the coefficients (``morphable.render.mouth_width``) and of the frames (dlib), or None."""

    coeff_opening: np.ndarray
    audio_rms: np.ndarray
    keypoint_motion: float
    keypoint_corr: float
    rendered_aperture: np.ndarray
    frame_motion: float
    lip_sync: dict = field(default_factory=dict)
    coeff_width: np.ndarray | None = None
    rendered_width: np.ndarray | None = None

    @property
    def coeff_audio_corr(self) -> float:
        return _corr(self.coeff_opening, self.audio_rms)

    @property
    def rendered_corr(self) -> float:
        return _corr(self.rendered_aperture, self.coeff_opening)

    @property
    def rendered_width_corr(self) -> float:
        """r of the rendered inner mouth width with the coefficients' (NaN when either is missing). The lip-sync
        stand-in scores the widths beside the apertures, so a mouth that opens on time while its corners move
        against the coefficients' can still be placed off by frames (results/facerender-motion-..., section 32)."""
        if self.coeff_width is None or self.rendered_width is None or not np.isfinite(self.rendered_width).any():
            return math.nan
        return _corr(self.rendered_width, self.coeff_width)

    @property
    def rendered_lag_frames(self) -> float:
        """Frames by which the rendered aperture follows the coefficient gap best (largest r over
        +-``CHAIN_MAX_LAG``; + = the face later than its coefficients, 0 = on time; NaN without a rendered mouth)."""
        from ..metrics.lipsync_validate import best_lag

        try:
            return float(-best_lag(self.rendered_aperture, self.coeff_opening, CHAIN_MAX_LAG)[0])
        except ValueError:
            return math.nan

    def rows(self) -> list[dict]:
        """One row per link: what is measured, the value, and what it would be if the link were broken."""
        ap = self.rendered_aperture
        return [
            {"link": "1 ExpNet: coefficient mouth gap", "measure": "std over frames (eye-corner units)",
             "value": float(np.std(self.coeff_opening)), "broken if": "~0 (closed lips, beta_0 only)"},
            {"link": "1 ExpNet: coefficient mouth gap", "measure": "r with audio loudness",
             "value": self.coeff_audio_corr, "broken if": "~0"},
            {"link": "2 MappingNet: driven keypoints", "measure": "std over frames (keypoint units)",
             "value": self.keypoint_motion, "broken if": "~0"},
            {"link": "2 MappingNet: driven keypoints", "measure": "max |r| of a keypoint coordinate with the gap",
             "value": self.keypoint_corr, "broken if": "~0"},
            {"link": "3 renderer: frames", "measure": "pixel std over frames ([0, 1])", "value": self.frame_motion,
             "broken if": "~0 (a still image)"},
            {"link": "3 renderer: rendered lips (dlib)", "measure": "inner-aperture std (inter-ocular units)",
             "value": float(np.nanstd(ap)) if np.isfinite(ap).any() else math.nan, "broken if": "~0"},
            {"link": "3 renderer: rendered lips (dlib)", "measure": "r of the aperture with the coefficient gap",
             "value": self.rendered_corr, "broken if": "~0"},
            {"link": "3 renderer: rendered lips (dlib)",
             "measure": f"lag of the best r within +-{CHAIN_MAX_LAG} (frames; + = the face later)",
             "value": self.rendered_lag_frames, "broken if": "far from 0 (a late or early mouth)"},
            {"link": "3 renderer: rendered lips (dlib)", "measure": "r of the inner mouth width with the coefficients'",
             "value": self.rendered_width_corr, "broken if": "<= 0 (the corners move against the coefficients)"},
        ]


def _coeff_mouth(coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inner-lip gap [T], inner mouth width [T]) of the expression coefficients [T, >= 70] (head pose zeroed),
    from the face model's landmarks, in eye-corner units."""
    from ..data.render import model_landmarks
    from ..morphable.render import mouth_opening, mouth_width

    c = np.array(coeffs, np.float32)[:, :MOTION_DIM]
    c[:, POSE] = 0.0  # the expression alone shapes the mouth
    lm = model_landmarks(c)
    return np.asarray(mouth_opening(lm), np.float64), np.asarray(mouth_width(lm), np.float64)


def shifted_row(video: str = GENERATED, shift_frames: int = SYNC_CHECK_SHIFT_FRAMES) -> str:
    """The lip-sync row of ``video`` with its audio delayed ``shift_frames`` frames."""
    return f"{video}, audio delayed {shift_frames} frames"


def lip_sync_rows(scorer, video, name: str = GENERATED, *, shift_frames: int = SYNC_CHECK_SHIFT_FRAMES,
                  max_frames: int | None = None) -> dict[str, dict]:
    """{name: summary, shifted_row(name): summary} of a video with its own audio (a path or ``metrics.Clip``) and of
    the same video with the audio delayed (``metrics.lipsync.lip_sync_summary``; ``{"source", "error"}`` where the
    clip is too short or dlib finds no face, so that a report can say so and go on)."""
    from ..face.detect import NoFaceError
    from ..metrics.lipsync import delay_audio, lip_sync_summary
    from ..metrics.video_io import as_clip

    clip = as_clip(video, max_frames=max_frames)
    rows = {}
    for row, shift in ((name, 0), (shifted_row(name, shift_frames), shift_frames)):
        try:
            rows[row] = lip_sync_summary(scorer.score(delay_audio(clip, shift) if shift else clip), scorer.label)
        except (NoFaceError, ValueError) as e:  # too short, or a blurred face that dlib does not find
            rows[row] = {"source": scorer.label, "error": str(e)}
    return rows


def lip_sync_check(lip_sync: dict, video: str = GENERATED, shift_frames: int = SYNC_CHECK_SHIFT_FRAMES) -> dict:
    """Issue 14's test of a talking face on rows of :func:`lip_sync_rows`: the estimated offset within +-1 frame,
    and LSE-C above the same video with its audio delayed ``shift_frames`` frames ("n/a" without both rows)."""
    gen, shifted = lip_sync.get(video, {}), lip_sync.get(shifted_row(video, shift_frames), {})
    if "offset_frames" not in gen or "lse_c" not in shifted:
        return {"offset within +-1": "n/a", "LSE-C above the shifted copy": "n/a", "lip-syncs": "n/a"}
    in_sync = abs(int(gen["offset_frames"])) <= 1
    above = float(gen["lse_c"]) > float(shifted["lse_c"])
    return {"offset within +-1": "yes" if in_sync else "NO", "LSE-C above the shifted copy": "yes" if above else "NO",
            "lip-syncs": "yes" if in_sync and above else "NO"}


def reference_frames(coeffs: np.ndarray, size: int, portrait=None) -> np.ndarray:
    """Coefficients [T, >= 70] (exp | angle | trans) rendered by the default corpus' renderer
    (``data.render.PortraitAnimator``: the portrait's landmarks moved by the face model, a piecewise-affine warp, a
    painted mouth cavity; no network) and resized to ``size`` -> uint8 [T, size, size, 3]. What an exact renderer of
    these coefficients shows at the same frame size: the talking chain's reference. portrait: a
    ``data.render.Portrait`` (default: the astronaut at 128 px or ``size``, the larger)."""
    import torch.nn.functional as F

    from ..data.render import PortraitAnimator, default_portrait

    c = np.asarray(coeffs, np.float32)
    if c.ndim != 2 or c.shape[1] < MOTION_DIM:
        raise ValueError(f"coefficients must be [T, >= {MOTION_DIM}], got {c.shape}")
    frames, _ = PortraitAnimator(portrait or default_portrait(max(128, int(size)))).render_sequence(c[:, :MOTION_DIM])
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def reference_lip_sync_rows(scorer, coeffs: np.ndarray, samples: np.ndarray, size: int, path, *,
                            shift_frames: int = SYNC_CHECK_SHIFT_FRAMES, max_frames: int | None = None) -> dict:
    """The reference renderer's lip-sync rows (name ``REFERENCE``): :func:`reference_frames` of ``coeffs`` at
    ``size`` written to the video ``path`` with the 16 kHz speech ``samples``, then :func:`lip_sync_rows`."""
    from ..video import write_video

    video = write_video(path, reference_frames(coeffs, size), audio=(np.asarray(samples, np.float32), AUDIO_RATE))
    return lip_sync_rows(scorer, video, REFERENCE, shift_frames=shift_frames, max_frames=max_frames)


def talking_chain(pipe, result, samples: np.ndarray, *, scorer=None, shift_frames: int = SYNC_CHECK_SHIFT_FRAMES,
                  max_frames: int | None = None, reference_video=None) -> TalkingChain:
    """The chain of a :class:`~sadtalker_lib.pipeline.GenerationResult` made by ``pipe`` (``keep_frames=True``,
    with a video file for the lip-sync rows). samples: the 16 kHz speech it was made from. With a ``scorer``, the
    lip-sync rows (:func:`lip_sync_rows`) of the video and, given a path ``reference_video``, of the reference
    renderer (:func:`reference_frames` at the video's frame size, written there with the same speech)."""
    from ..face.detect import NoFaceError
    from ..metrics.lipsync import MOUTH_FEATURES, lip_track, mouth_features
    from ..pipeline import GenerationOptions

    coeffs = np.asarray(result.coeffs)
    t = len(coeffs) if max_frames is None else min(len(coeffs), max_frames)
    opening, width = _coeff_mouth(coeffs[:t])
    a = np.asarray(samples, np.float64)
    rms = np.array([np.sqrt(np.mean(a[i * AUDIO_SAMPLES_PER_FRAME:(i + 1) * AUDIO_SAMPLES_PER_FRAME] ** 2) + 1e-12)
                    for i in range(t)])
    opts = GenerationOptions(seed=0)
    windows = pipe.driving_windows(result.source, coeffs, opts)
    enc = pipe.models.encode_source(result.source.image, windows.source)
    kps = torch.cat([pipe.models.keypoints(enc, b.windows, **b.angles).float().cpu()
                     for b in windows.batches(16, 0, t)]).numpy()  # [T, K, 3]
    kp_motion = float(kps.std(0).mean())
    flat = kps.reshape(t, -1)
    kp_corr = max((abs(_corr(flat[:, j], opening)) for j in range(flat.shape[1])), default=0.0)
    frames = np.asarray(result.frames[:t])
    lips = np.full((t, len(MOUTH_FEATURES)), np.nan)
    try:
        lips = mouth_features(lip_track(frames).landmarks)
    except NoFaceError:
        pass
    frame_motion = float((frames.astype(np.float64) / 255).std(0).mean())
    chain = TalkingChain(coeff_opening=opening, audio_rms=rms, keypoint_motion=kp_motion, keypoint_corr=kp_corr,
                         rendered_aperture=lips[:, MOUTH_FEATURES.index("inner_aperture")], frame_motion=frame_motion,
                         coeff_width=width, rendered_width=lips[:, MOUTH_FEATURES.index("inner_width")])
    if scorer is not None and result.video_path is not None:
        chain.lip_sync.update(lip_sync_rows(scorer, result.video_path, shift_frames=shift_frames, max_frames=t))
        if reference_video is not None:
            chain.lip_sync.update(reference_lip_sync_rows(scorer, coeffs[:t], samples, frames.shape[1], reference_video,
                                                          shift_frames=shift_frames, max_frames=t))
    return chain


def mouth_extremes(chain: TalkingChain) -> tuple[int, int]:
    """(frame index with the most closed, with the most open coefficient mouth gap)."""
    return int(np.argmin(chain.coeff_opening)), int(np.argmax(chain.coeff_opening))


def plot_talking_chain(chain: TalkingChain, frames: np.ndarray):
    """A figure: the coefficient mouth gap, the audio loudness and the rendered aperture over time (each
    standardised), and the lower face of the frames where the coefficients close / open the mouth most.
    frames: uint8 [T, H, W, 3] of the video."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 3))
    z = lambda x: (x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)  # noqa: E731
    ax[0].plot(z(chain.coeff_opening), label="coefficient mouth gap (ExpNet)")
    ax[0].plot(z(chain.audio_rms), alpha=0.6, label="audio loudness")
    if np.isfinite(chain.rendered_aperture).any():
        ax[0].plot(z(chain.rendered_aperture), label="rendered inner-lip aperture (dlib)")
    ax[0].set_xlabel("frame")
    ax[0].set_title("standardised over the clip", fontsize=9)
    ax[0].legend(fontsize=7)
    closed, opened = mouth_extremes(chain)
    h = frames.shape[1]
    lower = slice(h // 2, h)
    ax[1].imshow(np.concatenate([frames[closed][lower], frames[opened][lower]], 1))
    ax[1].set_title(f"lower face: frame {closed} (coefficients: mouth most closed) | frame {opened} (most open)",
                    fontsize=8)
    ax[1].axis("off")
    fig.tight_layout()
    return fig



@torch.no_grad()
def mouth_keypoint_sensitivity(renderer, frame: torch.Tensor, step: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Can the renderer open a mouth at all? Link 3 without the MappingNet: the source frame [1, 3, S, S] rendered
    with its own (HEEstimator) keypoints as the driving ones, then with one keypoint coordinate moved by ``step``
    (keypoint units) at a time. Returns the mean |change| inside the mouth box (dlib points 48-67 of the frame)
    and over the whole frame, each [K, 3]; all near 0: no keypoint moves the rendered mouth."""
    from ..metrics.motion_transfer import as_uint8_frames, face_landmarks
    from ..steps.keypoints import facevid2vid_keypoints

    renderer.eval()
    lm = face_landmarks(as_uint8_frames(frame))[0]
    if not np.isfinite(lm).all():
        raise ValueError("dlib finds no face in the frame")
    x0, y0 = np.floor(lm[MOUTH_POINTS].min(0)).astype(int)
    x1, y1 = np.ceil(lm[MOUTH_POINTS].max(0)).astype(int) + 1
    kp_c = renderer.kp_extractor(frame)
    kp = facevid2vid_keypoints(kp_c, renderer.he_estimator(frame))
    feature = renderer.generator.encode_source(frame)
    base = renderer.generator.render(feature, kp_source=kp, kp_driving=kp)["prediction"]
    mouth, whole = np.zeros(kp.shape[1:]), np.zeros(kp.shape[1:])
    for k in range(kp.shape[1]):
        for a in range(kp.shape[2]):
            moved = kp.clone()
            moved[0, k, a] += step
            diff = (renderer.generator.render(feature, kp_source=kp, kp_driving=moved)["prediction"] - base).abs()
            mouth[k, a], whole[k, a] = float(diff[..., y0:y1, x0:x1].mean()), float(diff.mean())
    return mouth, whole
