"""The ONE render loop (SadTalker Fig. 2, right): source image + coefficient windows -> video frames, streamed.

    1. canonical keypoints of the source            kp_c = KPDetector(source)              once
    2. source motion from the source semantics       kp_s = transform(kp_c, MappingNet(src)) once
    3. source appearance volume                      f_s  = generator.encode_source(source) once
    4. for every batch of B consecutive frames:      kp_d = transform(kp_c, MappingNet(windows))  (angle overrides)
                                                     frames = generator.render(f_s, kp_s, kp_d)

This is the official ``make_animation`` (``src/facerender/modules/make_animation.py``) with two changes that
do not change any frame: the source-only work (steps 1-3) is hoisted out of the frame loop (the official loop
re-encodes the source image in every generator call), and a batch holds B consecutive frames instead of one
frame from each of B pieces of the clip (the official ``get_facerender_data`` layout). Frames do not interact
(every network is in eval mode), which the parity tests check against the official fixtures.

The networks are reached through a :class:`~sadtalker_lib.wrapper.Models` (``encode_source``, ``keypoints``,
``render_frames``), which owns device and precision (``exact`` / ``fast``: :mod:`sadtalker_lib.precision`).
With ``prefetch`` (default on a GPU) the next batch renders in a background thread while the caller pastes and
encodes the current one; the frames and their order are the same.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

from .windows import DrivingWindows

__all__ = ["SourceEncoding", "RenderedBatch", "render_stream"]


@dataclass
class SourceEncoding:
    """Everything that depends only on the source image: computed once per video.

    kp_canonical / kp_source [1, K, 3]; feature_3d: the generator's appearance volume [1, C, D, H/4, W/4].
    """

    kp_canonical: torch.Tensor
    kp_source: torch.Tensor
    feature_3d: torch.Tensor

    def expand(self, b: int) -> "SourceEncoding":
        """The same source for a batch of ``b`` driving frames (views, no copies) when encoded with B = 1."""
        if self.kp_canonical.shape[0] == b:
            return self
        if self.kp_canonical.shape[0] != 1:
            raise ValueError(f"cannot expand a source encoded with batch {self.kp_canonical.shape[0]} to {b}")
        parts = (self.kp_canonical, self.kp_source, self.feature_3d)
        return SourceEncoding(*(x.expand(b, *x.shape[1:]) for x in parts))


@dataclass
class RenderedBatch:
    """Frames ``start .. start + B - 1``: frames float32 [B, 3, H, W] in [0, 1] and their driven keypoints
    kp_driving [B, K, 3] (on the CPU)."""

    start: int
    frames: torch.Tensor
    kp_driving: torch.Tensor


def render_stream(models, source_image, windows: DrivingWindows, *, full: bool = False, batch_size: int = 2,
                  start: int = 0, stop: int | None = None, progress: bool = True,
                  source: SourceEncoding | None = None, prefetch: bool | None = None) -> Iterator[RenderedBatch]:
    """Yield :class:`RenderedBatch` es in frame order, ``batch_size`` consecutive frames at a time.

    models: a :class:`~sadtalker_lib.wrapper.Models`. source_image: uint8 [S, S, 3] or float [1, 3, S, S] in
    [0, 1]. windows: from :func:`~sadtalker_lib.steps.windows.driving_windows`. full: the 73-channel MappingNet
    (``--preprocess full / extfull``). start / stop: render only frames start .. stop-1 (their windows still see
    the whole clip). source: a ready :class:`SourceEncoding` (else encoded here, once). prefetch: render one
    batch ahead in a background thread (default: on for CUDA devices, off on CPUs, whose cores are shared).
    """
    if prefetch is None:
        prefetch = getattr(models, "device", torch.device("cpu")).type == "cuda"
    batches = _render_batches(models, source_image, windows, full=full, batch_size=batch_size, start=start,
                              stop=stop, progress=progress, source=source)
    yield from (_prefetched(batches) if prefetch else batches)


def _render_batches(models, source_image, windows: DrivingWindows, *, full, batch_size, start, stop, progress,
                    source) -> Iterator[RenderedBatch]:
    enc = source if source is not None else models.encode_source(source_image, windows.source, full=full)
    stop = len(windows) if stop is None else min(stop, len(windows))
    for batch in tqdm(windows.batches(batch_size, start, stop), desc="render", total=-(-(stop - start) // batch_size),
                      disable=not progress):
        kp_d = models.keypoints(enc, batch.windows, full=full, **batch.angles)
        yield RenderedBatch(batch.start, models.render_frames(enc, kp_d), kp_d.float().cpu())


_DONE = object()


def _prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Yield ``items`` in order while a background thread computes up to ``depth`` items ahead; an exception in
    the thread is raised here; closing this generator early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer
            put((None, e))

    thread = threading.Thread(target=work, name="render-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
