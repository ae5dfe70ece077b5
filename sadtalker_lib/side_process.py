"""Independent work run in a second process beside the caller's, so that a 2-core CPU is used by two jobs at once.

The main job's training stages run one thread each (their CPU presets set ``num_threads=1``: at 64-128 px one
thread is as fast as two), so the job used one core of two. :class:`SideProcess` runs a function in a spawned
process (its own interpreter: no state shared with the caller), with its terminal output written to a log file
(two sets of progress bars on one terminal are unreadable), and hands back the function's return value (pickled:
``nn.Module`` s, dataclasses, arrays) or raises its error with the log's path.

This is for independent jobs on one machine; data-parallel training across processes is Accelerate's
(``train.loop``).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

__all__ = ["SideProcess", "SideProcessError"]


class SideProcessError(RuntimeError):
    """The function of a :class:`SideProcess` raised; the message names its log file."""


def _run_logged(fn: Callable, args: tuple, kwargs: dict, log: str, threads: int):
    """In the child: stdout / stderr (Python's and the C libraries') -> ``log``, ``threads`` torch threads."""
    import torch

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    torch.set_num_threads(threads)
    return fn(*args, **kwargs)


class SideProcess:
    """``fn(*args, **kwargs)`` started now in a spawned process; :meth:`result` waits for its return value.

    fn: a module-level function (spawn imports it by name); log: file that receives the process' output;
    threads: torch intra-op threads in the process.
    """

    def __init__(self, fn: Callable, *args, log: str | os.PathLike, threads: int = 1, **kwargs):
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._future = self._pool.submit(_run_logged, fn, args, kwargs, str(self.log), threads)

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> Any:
        """The function's return value (waits for it); its exception as :class:`SideProcessError`."""
        try:
            return self._future.result()
        except Exception as e:  # noqa: BLE001 - re-raised with where to look
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""
            raise SideProcessError(f"the second process failed: {type(e).__name__}: {e}\n"
                                   f"its output is in {self.log}; last lines:\n{tail}") from e
        finally:
            self._pool.shutdown(wait=True)
