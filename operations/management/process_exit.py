"""End a command-line process whose command has finished, without the interpreter's teardown.

At exit Python frees every object of every module one by one; for Django and its dependencies that takes about
0.2 s (measured on the 2-core machine: a process that only sets Django up takes 0.84 s, 0.63 s without it), a tenth of
loading a 40k-row workbook. Nothing in that teardown is work of the command: what the interpreter's exit does
before it is done here in the same order (wait for the threads that are not daemons, run the ``atexit`` handlers,
among them logging's, which flushes and closes its handlers, and flush the standard streams), then the process ends
with status 0. An interpreter without these hooks exits the usual way.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_without_teardown() -> NoReturn:
    shutdown = getattr(threading, "_shutdown", None)
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exit_functions is None:
        sys.exit(0)
    shutdown()
    run_exit_functions()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed stream or a reader gone: the interpreter ignores these at exit too
            pass
    os._exit(0)
