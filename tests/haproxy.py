"""A real HAProxy in front of gateway replicas, as an operator would run it (docs: README "Several replicas").

Debian's `haproxy` in the foreground on 127.0.0.1, round-robin over the replicas, with two rules that
make MCP work behind it:
- sessions of the handshake era (`Mcp-Session-Id`) stick to the replica that created them (the
  session's stream lives in that process); a request of the stateless era goes to any replica;
- a replica that is down is taken out by a TCP check (as in examples/replicas/haproxy.cfg) and a
  request to it is sent elsewhere (`option redispatch`); a session stuck to it then answers 404,
  and the client starts a new one.

Missing binaries are a failure, not a skip: CI installs `haproxy` (see .ci/run).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CONFIG = """\
global
    maxconn 2000
    stats socket {root}/admin.sock mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 5s
    retries 2
    option redispatch

frontend mcp
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    stick-table type string len 128 size 100k expire 30m
    stick on req.hdr(mcp-session-id)
    stick store-response res.hdr(mcp-session-id)
{servers}
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        raise RuntimeError("HAProxy is not installed: apt-get install haproxy (the replica tests need a real one)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def haproxy(root: Path, backends: Sequence[int]) -> Iterator[str]:
    """HAProxy on a free port balancing over `backends` (ports on 127.0.0.1); yields its MCP URL."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{backend} check inter 300ms fall 2 rise 1" for i, backend in enumerate(backends, 1)
    )
    config = root / "haproxy.cfg"
    config.write_text(CONFIG.format(root=root, port=port, servers=servers))
    binary = haproxy_binary()
    subprocess.run([binary, "-c", "-q", "-f", str(config)], check=True)
    log = (root / "haproxy.log").open("w")
    process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(root / 'haproxy.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not listen within 10 s") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
