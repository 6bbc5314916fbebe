"""`wearable-gateway demo` as a child process, on a free port (`--port 0`) and a temporary data
folder, as a newcomer runs it: the base URL and the `export` lines are read from its output."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# A cold start: interpreter, embedded PostgreSQL initdb, migrations of two zones, the scenario.
START_TIMEOUT = 240.0
SERVING = re.compile(r"^Serving on (http://\S+) ")
EXPORT = re.compile(r"^  export (.+)$")


@dataclass
class Demo:
    base_url: str
    environment: dict[str, str]  # what the demo's `export` lines set
    output: list[str]


def _exports(line: str) -> dict[str, str]:
    pairs = (word.partition("=") for word in shlex.split(line))
    return {name: value for name, _, value in pairs}


@contextmanager
def running_demo(data_dir: Path) -> Iterator[Demo]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen(  # noqa: S603 — our own interpreter and module
        [sys.executable, "-m", "gateway", "demo", "--port", "0", "--data-dir", str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            if SERVING.match(line):
                ready.set()
        ready.set()  # the process ended: stop waiting

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(START_TIMEOUT) or proc.poll() is not None:
            raise RuntimeError("the demo did not start serving:\n" + "\n".join(output[-40:]))
        base = next(m.group(1) for m in map(SERVING.match, output) if m)
        environment: dict[str, str] = {}
        for line in output:
            if m := EXPORT.match(line):
                environment |= _exports(m.group(1))
        yield Demo(base_url=base, environment=environment, output=output)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, as the demo tells the reader
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                reader.join(timeout=1)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        reader.join(timeout=10)
