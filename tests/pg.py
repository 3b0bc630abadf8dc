"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a Unix socket.

`initdb` refuses to run as root, so when the tests run as root the cluster belongs to the
`postgres` user and its programs run through `runuser`. The server listens on a Unix socket
in its own folder and on no TCP port unless asked (HAProxy-free tests need none); trust
authentication, since only this machine's users can reach the socket folder.

Missing binaries are a failure, not a skip: CI installs `postgresql` (see .ci/run).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _bindir() -> Path:
    """The newest installed PostgreSQL's bin folder."""
    override = os.environ.get("PORTCULLIS_PG_BINDIR")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        pg_ctl = shutil.which("pg_ctl")
        if pg_ctl:
            return Path(pg_ctl).parent
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (the tests need a real server)")
    return Path(found[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One running cluster. `dsn(db)` connects as the superuser over the Unix socket."""

    root: Path
    port: int
    user: str
    process: subprocess.Popen[bytes]
    bindir: Path

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user or self.user}"

    def url(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A TCP URL (the server must have been started with `tcp=True`)."""
        auth = user or self.user
        if password:
            auth += f":{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database of the caller's own; its name."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self, mode: str = "fast") -> None:
        _run_as(self.user, [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode, "-w", "stop"])
        self.process.wait(timeout=30)

    def start(self) -> None:
        """Start again after `stop` (the same data, port and socket)."""
        self.process = _launch(self.bindir, self.root, self.port, self.user, tcp=self._tcp)

    _tcp: bool = False


def _as_user() -> str:
    return "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")


def _run_as(user: str, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, timeout=120)


def _launch(bindir: Path, root: Path, port: int, user: str, *, tcp: bool) -> subprocess.Popen[bytes]:
    argv = [
        str(bindir / "postgres"),
        "-D", str(root / "data"),
        "-p", str(port),
        "-k", str(root / "sock"),
        "-c", f"listen_addresses={'127.0.0.1' if tcp else ''}",
        "-c", "max_connections=200",
        "-c", "fsync=on",
        "-c", "synchronous_commit=on",
    ]  # fmt: skip
    if os.geteuid() == 0:
        argv = ["runuser", "-u", user, "--", *argv]
    with open(root / "server.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited at start: {(root / 'server.log').read_text()[-2000:]}")
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-h", str(root / "sock"), "-p", str(port)], capture_output=True
        )
        if ready.returncode == 0:
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"postgres did not become ready in 30 s: {(root / 'server.log').read_text()[-2000:]}")


@contextmanager
def postgres_server(*, tcp: bool = False) -> Iterator[PostgresServer]:
    """Start a throw-away cluster; stop it and delete it on exit."""
    bindir = _bindir()
    user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="portcullis-pg-"))
    (root / "sock").mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, user)
        shutil.chown(root / "sock", user)
    _run_as(
        user,
        [str(bindir / "initdb"), "-D", str(root / "data"), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
    )
    port = free_port()
    process = _launch(bindir, root, port, user, tcp=tcp)
    server = PostgresServer(root=root, port=port, user=user, process=process, bindir=bindir)
    server._tcp = tcp
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.process.kill()
        shutil.rmtree(root, ignore_errors=True)
