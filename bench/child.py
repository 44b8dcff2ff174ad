"""Run a manage.py command in a child process and measure it: wall seconds, peak RSS, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["manage.py", "refgov", "reference", "pipeline", "stewardship", "operations", "refgov_api"]


# The month partitions of both fact tables, dropped (``{only}``: a further condition on the partition, or empty).
DROP_PARTITIONS = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS t FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent IN ('business."规模明细"'::regclass, 'business."收入明细"'::regclass) {only} LOOP
    EXECUTE 'DROP TABLE ' || r.t;
  END LOOP;
END $$;
"""


def compile_bytecode() -> None:
    """Write the project's bytecode, as an installed application has it after its first run. A shell with
    PYTHONDONTWRITEBYTECODE set (this machine's) would make every measured command compile its ~80 modules from
    source first (0.06–0.08 s a run)."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=ROOT, check=True)


def run_manage(env: dict, *args: str) -> tuple[float, float, dict]:
    """Wall seconds, peak resident memory (MB, polled every 20 ms) and the parsed JSON stdout of the command."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = psutil.Popen([sys.executable, str(ROOT / "manage.py"), *args], env=env, stdout=out, stderr=err)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, proc.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{args[0]} failed: {err.read().strip()[-2000:]}")
        text = out.read()
    return seconds, peak / 2**20, json.loads(text) if text.strip().startswith("{") else {}
