"""The one progress helper: a rich bar on a terminal, quiet rate-limited log lines otherwise."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from autoclip.progress import Progress


def test_without_a_terminal_it_logs_at_most_every_interval(caplog) -> None:
    log = logging.getLogger("autoclip.test_progress")
    caplog.set_level(logging.INFO, logger="autoclip.test_progress")
    with Progress("work {task.description}", total=10, logger=log, every=0.2, columns=("bar", "eta")) as bar:
        assert not bar.shown  # pytest captures stderr: not a terminal
        for i in range(5):
            bar.update(completed=i)  # no bar: nothing drawn, no error
            bar.note("step %d", i, every=True)
        time.sleep(0.25)
        bar.note("step %d", 5, every=True)
        bar.note("done")  # not rate-limited
    assert [r.getMessage() for r in caplog.records] == ["step 5", "done"]


def test_on_a_terminal_it_draws_a_bar_and_stays_quiet(tmp_path) -> None:
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='LOG %(message)s')\n"
        "from autoclip.progress import Progress\n"
        "with Progress('scoring {task.description}', total=4, name='a.mkv', columns=('bar', '{task.fields[pos]}'),"
        " pos='') as bar:\n"
        "    assert bar.shown\n"
        "    for i in range(5):\n"
        "        bar.update(completed=i, pos=f'pos-{i}'); bar.note('quiet %d', i)\n"
    )
    leader, follower = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", code], stderr=follower, stdout=subprocess.PIPE, timeout=60,
                              env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert proc.stdout == b""  # a bar means no log lines
    assert b"scoring a.mkv" in drawn and b"pos-4" in drawn
