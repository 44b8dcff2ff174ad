"""A refgov command that succeeded ends its process without the interpreter's teardown, and loses nothing by it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROGRAM = """
import atexit, logging, sys, threading, time
from pathlib import Path
from operations.management.process_exit import exit_without_teardown

out = Path(sys.argv[1])

class Teardown:  # freed only by the interpreter's teardown
    def __del__(self):
        (out / "teardown").write_text("ran")

kept = Teardown()
logging.basicConfig(filename=out / "log.txt", level=logging.INFO)
logging.getLogger("x").info("logged before exit")
atexit.register(lambda: (out / "atexit").write_text("ran"))

def late():
    time.sleep(0.3)
    (out / "thread").write_text("ran")

threading.Thread(target=late).start()  # not a daemon: the exit waits for it
sys.stdout.write("x" * 1_000_000)  # more than a pipe holds: still buffered when the command returns
if sys.argv[2] == "fast":
    exit_without_teardown()
sys.exit(0)
"""


@pytest.mark.parametrize("how", ["fast", "usual"])
def test_the_exit_waits_for_threads_runs_atexit_flushes_output_and_skips_only_the_teardown(tmp_path, how):
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(PROGRAM))

    done = subprocess.run(
        [sys.executable, str(program), str(tmp_path), how], capture_output=True, timeout=60, cwd=str(tmp_path)
    )

    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout) == 1_000_000
    assert (tmp_path / "thread").read_text() == "ran"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert "logged before exit" in (tmp_path / "log.txt").read_text()
    assert (tmp_path / "teardown").exists() == (how == "usual")
