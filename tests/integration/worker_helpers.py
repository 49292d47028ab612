"""Starting worker processes and Redis for the worker tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAST = {"DARL_JOB_HEARTBEAT_S": "0.5", "DARL_JOB_STALE_S": "4", "DARL_JOB_REDISPATCH_S": "5"}


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_worker(log: Path, concurrency: int = 1, *, cli: bool = False, **env: str) -> subprocess.Popen:
    """A worker process with the test's DATABASE_URL / DARL_HOME / DARL_QUEUE_URL and fast timings."""
    cmd = ([sys.executable, "-m", "darl_core", "worker", "--concurrency", str(concurrency)] if cli
           else [sys.executable, "-m", "darl_app.worker", "serve", str(concurrency)])
    full_env = {**os.environ, **FAST, **env, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throw-away redis-server on loopback (Debian's package; `make test` installs it)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def read_record(path: Path) -> list[tuple[int, int, int, int]]:
    """Lines "job attempt step pid" written by the sleep job."""
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
