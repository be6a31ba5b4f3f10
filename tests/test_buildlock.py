"""microscopiq.buildlock: a second process waits for the first; a killed holder frees the lock."""

import subprocess
import sys
import time

from microscopiq.buildlock import build_lock

HOLD = """
import sys, time
from microscopiq.buildlock import build_lock
with build_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_second_build_waits_for_the_first(tmp_path, capsys):
    folder = tmp_path / "build" / "cfg"
    holder = _holder(folder, 1.0)
    started = time.monotonic()
    with build_lock(folder):
        waited = time.monotonic() - started
    holder.wait()
    assert waited > 0.9, f"the lock was granted after {waited:.2f} s, while the first build held it for 1 s"
    assert f"waiting for another build of {folder.resolve()}" in capsys.readouterr().err


def test_killed_holder_releases_the_lock(tmp_path):
    folder = tmp_path / "cfg"
    holder = _holder(folder, 60)
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with build_lock(folder, quiet=True):
        assert time.monotonic() - started < 5
