"""Imported by the batch's forkserver only (worker.PRELOAD): it ends without the interpreter's teardown.

The forkserver holds torch and the engine. When a batch ends, its normal exit took about 0.6 s, and until then it
kept the batch's stdout and stderr open, so a caller reading them waited that long too. Its workers are forked
from it and end with os._exit anyway (multiprocessing), and the handler is registered only when this module is
imported by the forkserver's own main(), and acts only in that process: imported anywhere else, it does nothing."""
from __future__ import annotations

import atexit
import os
import sys


def _imported_by_forkserver() -> bool:
    from multiprocessing import forkserver

    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


def _exit_now(pid: int) -> None:
    if os.getpid() == pid:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # the forkserver ends only when the batch has closed it: nothing of it is left to write


REGISTERED = _imported_by_forkserver()
if REGISTERED:
    atexit.register(_exit_now, os.getpid())
