"""Starts and stops real homeserver instances for the integration tests.

Each instance is `scripts/dev.sh` (what `make dev` runs): scripts/serve.mjs serving the built Worker in
workerd through Miniflare, with local D1 and Durable Object state in its own directory, on loopback only. The
test run builds the Worker once, so instances start with MATRIX_EDGE_PREBUILT=1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def _default_interrupt() -> None:
    """Ctrl-C handled as a terminal would: a test suite started in the background by a
    non-interactive shell inherits SIGINT ignored, and bash cannot trap a signal ignored on entry,
    so without this the Ctrl-C test of `make dev` would fail for how pytest was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Homeserver:
    def __init__(self, state_dir: Path, *, env: dict[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None, ca: Path | None = None,
                 command: list[str] | None = None):
        self.port = free_port()
        self.state_dir = state_dir
        self.tls = tls
        self.verify: bool | str = str(ca) if ca else True
        self.extra_env = env or {}
        self.command = command or ["bash", "scripts/dev.sh"]
        self.process: subprocess.Popen | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}.{self.port}.log"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    @property
    def server_name(self) -> str:
        return self.extra_env.get("SERVER_NAME", f"localhost:{self.port}")

    def start(self, timeout: float = 120) -> "Homeserver":
        env = dict(os.environ)
        env.update({
            "PORT": str(self.port),
            "STATE_DIR": str(self.state_dir),
            "MATRIX_EDGE_PREBUILT": "1",
        })
        if self.tls:
            env["TLS_CERT"], env["TLS_KEY"] = str(self.tls[0]), str(self.tls[1])
        env.update(self.extra_env)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # A session of its own: the test can signal dev.sh alone, and still clean up its group.
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_default_interrupt)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"homeserver exited early; log: {self.log_path}\n{self.log()}")
            try:
                if self.get("/_matrix/client/versions", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"homeserver not ready after {timeout}s; log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self.base_url + path, verify=self.verify, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signals the launcher only, as a user's Ctrl-C or `kill` would, and waits for it.
        Whatever it leaves behind is then killed, so a failing test never leaks processes."""
        if self.process is None:
            return None
        code = None
        try:
            self.process.send_signal(sig)
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            leftovers = processes_mentioning(str(self.state_dir))
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kill_session(self.process)
            self.process = None
        return code

    def __enter__(self) -> "Homeserver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL to the session a process was started in (start_new_session=True), then reaps it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=5)


def _live_processes():
    """(pid, session id, command line) of every live process except zombies and ourselves."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, pgrp, session, tty_nr... (proc(5)). Index 4 is the
        # terminal, 0 for every process without one: reading it as the session made a stop that
        # found a leftover wrangler kill every terminal-less process on the machine.
        if fields[0] != "Z":
            yield int(entry.name), int(fields[3]), cmdline


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (the instance's state directory), and
    every process in their sessions: workerd does not name the state directory, but it runs in
    the session dev.sh gives wrangler."""
    processes = list(_live_processes())
    # Never the test run's own session (nor init's, 0).
    sessions = {sid for _, sid, cmdline in processes if text in cmdline} - {os.getsid(0), 0}
    return sorted(pid for pid, sid, cmdline in processes if text in cmdline or sid in sessions)


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf for localhost/127.0.0.1 signed by it: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    ext = directory / "leaf.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=matrix-edge test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def d1_database(state_dir: Path) -> Path:
    """The SQLite file behind an instance's local D1 database, for tests that check what was
    stored (and only read it)."""
    files = [p for p in (state_dir / "v3" / "d1").rglob("*.sqlite") if p.name != "metadata.sqlite"]
    if len(files) != 1:
        raise RuntimeError(f"expected one D1 database under {state_dir}, found {files}")
    return files[0]
