"""A real Synapse (the PyPI package in the test venv) as a local federation peer of our Worker.

`Synapse` is to Synapse what `harness.Homeserver` is to our Worker: a fresh temporary directory
with a generated config, SQLite, two loopback listeners, a log file, start() that waits until it
answers, stop() that always leaves no process behind. `federation_pair()` starts one of each,
configured to reach each other directly over TLS from one throwaway test CA.

Server names. Both servers are named `localhost:<port>`:
- A server name with an explicit port makes the other side connect straight to that host and port:
  no `.well-known`, no SRV lookup, so no DNS is needed in either direction.
- `localhost` rather than `127.0.0.1` because of our side's outbound `fetch`: it checks the
  certificate against the URL's host, and with a host name that check is plain DNS-name
  matching (the leaf has SAN `DNS:localhost,IP:127.0.0.1`, so either would be covered, but a name
  is what a real deployment uses and what SNI can carry: Synapse sends no SNI for IP literals).
  Synapse, in turn, connects to `localhost:<port>` of our Worker with SNI `localhost` and checks
  the same leaf against `federation_custom_ca_list`.
- Both servers listen on 127.0.0.1 only. On these machines `localhost` resolves to 127.0.0.1
  alone; where /etc/hosts also maps it to ::1, Synapse (Twisted's HostnameEndpoint) tries every
  address, but whether workerd's fetch falls back from a refused ::1 is unverified.
- Checked with a throwaway Worker: workerd's fetch with NODE_EXTRA_CA_CERTS reaches Synapse's
  TLS listener as `https://localhost:P` and as `https://127.0.0.1:P` (IP SAN honoured), fails
  without the CA, and gets "Network connection lost" for `https://[::1]:P`.
- Our server's name is `localhost:<port>` anyway (scripts/dev.sh's default), so the two names
  differ only by port, which the Matrix grammar allows: user ids look like `@alice:localhost:8448`.

Synapse settings that matter: a TLS federation listener (Synapse only ever speaks TLS for outbound federation, and so
expects its peer to), `ip_range_blacklist: []`
(otherwise every loopback destination is refused with `502 Can't connect`),
`trusted_key_servers: []` (otherwise first key fetches wait on matrix.org),
`federation_custom_ca_list` with the test CA, and a short per-destination retry backoff so that a
test that stops and restarts our server is not locked out for the default 10 minutes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

from harness import Homeserver, free_port, kill_session, make_test_ca

PASSWORD = "synapse peer test password"


def _die_with_parent() -> None:
    """Runs in the child before exec: a SIGTERM when pytest itself dies (even by SIGKILL), so a
    crashed test run never leaves a Synapse behind. Linux sends it when the *thread* that forked
    the child exits, so Synapse must be launched from the main thread, never from a pool."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Synapse:
    """One Synapse in its own temporary directory.

    - federation (and key server) listener: TLS on `127.0.0.1:<fed_port>`, leaf cert from the test CA;
    - client listener: plain HTTP on `127.0.0.1:<client_port>`;
    - server name `<host>:<fed_port>` (`localhost` by default; see the module docstring);
    - SQLite, open registration, rate limits out of the way, logs in `<directory>/homeserver.log`.
    """

    def __init__(self, directory: Path, *, ca: Path, cert: Path, key: Path, host: str = "localhost",
                 config: dict | None = None):
        self.directory = directory
        self.ca, self.cert, self.key = ca, cert, key
        self.fed_port = free_port()
        self.client_port = free_port()
        self.server_name = f"{host}:{self.fed_port}"
        self.extra_config = config or {}
        self.process: subprocess.Popen | None = None
        self.log_path = directory / "homeserver.log"
        self.console_path = directory / "console.log"
        self.startup_seconds: float | None = None

    # -- URLs -------------------------------------------------------------------------------------

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def federation_url(self) -> str:
        return f"https://localhost:{self.fed_port}"

    # -- configuration ----------------------------------------------------------------------------

    def _overrides(self) -> dict:
        d = self.directory
        unlimited = {"per_second": 1000, "burst_count": 1000}
        config = {
            "server_name": self.server_name,
            "public_baseurl": self.client_url + "/",
            "pid_file": str(d / "homeserver.pid"),
            "listeners": [
                {"port": self.fed_port, "type": "http", "tls": True, "bind_addresses": ["127.0.0.1"],
                 "x_forwarded": False, "resources": [{"names": ["federation", "keys"], "compress": False}]},
                {"port": self.client_port, "type": "http", "tls": False, "bind_addresses": ["127.0.0.1"],
                 "x_forwarded": False, "resources": [{"names": ["client", "media"], "compress": False}]},
            ],
            "tls_certificate_path": str(self.cert),
            "tls_private_key_path": str(self.key),
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "media_store_path": str(d / "media_store"),
            "log_config": str(d / "log.config"),
            "report_stats": False,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": "synapse-peer-shared-secret",
            "suppress_key_server_warning": True,
            # Federation straight to loopback, trusting only the test CA.
            "trusted_key_servers": [],
            "ip_range_blacklist": [],
            "federation_ip_range_blacklist": [],
            "federation_custom_ca_list": [str(self.ca)],
            "federation_verify_certificates": True,
            # Names per synapse/config/federation.py of 1.163 (durations: "1s" or an int in ms, no
            # "ms" suffix). A failed destination is retried after 1 s rather than 10 minutes, and
            # only when there is something new for it or it contacts Synapse (which marks it up).
            # A transaction is tried once (max_long_retries 0): otherwise Synapse keeps retrying it
            # for seconds and delivers it whenever the restarted server happens to be back, which
            # makes what crossed when (the fork test) a race. Queries keep two quick retries.
            "federation": {
                "destination_min_retry_interval": "1s",
                "destination_retry_multiplier": 1,
                "destination_max_retry_interval": "2s",
                "max_long_retries": 0,
                "max_long_retry_delay": "2s",
                "max_short_retries": 2,
                "max_short_retry_delay": 500,
            },
            "room_list_publication_rules": [{"action": "allow"}],
            "alias_creation_rules": [{"action": "allow"}],
            "allow_public_rooms_over_federation": True,
            "allow_profile_lookup_over_federation": True,
            "require_auth_for_profile_requests": False,
            # Presence EDUs would make Synapse contact us whenever its users are active, which
            # makes "what crossed the wire when" tests (restarts, forks) timing-dependent.
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "rc_message": unlimited,
            "rc_registration": unlimited,
            "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
            "rc_joins": {"local": unlimited, "remote": unlimited},
            "rc_joins_per_room": unlimited,
            "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
            "rc_admin_redaction": unlimited,
            "rc_room_creation": unlimited,
            "rc_presence": {"per_user": unlimited},
            "rc_profile": unlimited,
            "rc_key_requests": unlimited,
            "rc_federation": {"window_size": 1000, "sleep_limit": 1000, "sleep_delay": 1,
                              "reject_limit": 1000, "concurrent": 100},
        }
        config.update(self.extra_config)
        return config

    def _log_config(self) -> str:
        # An unbuffered file handler (the generated config buffers for about 5 s).
        return json.dumps({
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                                                 " - %(request)s - %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                  "filename": str(self.log_path), "encoding": "utf8"}},
            "loggers": {"synapse.storage.SQL": {"level": "WARNING"},
                        "synapse.access": {"level": "INFO"}},
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        })

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "synapse.app.homeserver", *args]

    def configure(self) -> None:
        """Generates the base config (secrets, signing key) and writes the overrides beside it."""
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "homeserver.yaml").exists():
            subprocess.run(self._command("--generate-config", "-H", self.server_name, "--report-stats=no",
                                         "--config-path", str(d / "homeserver.yaml"),
                                         "--data-directory", str(d)),
                           cwd=d, check=True, capture_output=True)
        # JSON is YAML: later `-c` files win per top-level key.
        (d / "overrides.yaml").write_text(json.dumps(self._overrides(), indent=1))
        (d / "log.config").write_text(self._log_config())

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> "Synapse":
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Starts the process without waiting. Call it from the thread that will outlive the
        process (the main thread): the parent-death signal fires when that *thread* exits."""
        self.configure()
        d = self.directory
        with open(self.console_path, "ab") as console:
            self._launched = time.monotonic()
            self.process = subprocess.Popen(
                self._command("-c", str(d / "homeserver.yaml"), "-c", str(d / "overrides.yaml")),
                cwd=d, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)

    def wait_ready(self, timeout: float = 60) -> "Synapse":
        """Waits until both listeners answer (safe to call from another thread)."""
        deadline = self._launched + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"synapse exited early ({code}); {self.log_tail()}")
            if self._ready():
                self.startup_seconds = time.monotonic() - self._launched
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"synapse not ready after {timeout}s; {self.log_tail()}")

    def _ready(self) -> bool:
        try:
            client = requests.get(self.client_url + "/_matrix/client/versions", timeout=2)
            fed = requests.get(self.federation_url + "/_matrix/federation/v1/version", timeout=2,
                               verify=str(self.ca))
            return client.status_code == 200 and fed.status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL to its whole session: never a leftover process."""
        if self.process is None:
            return
        try:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_session(self.process)
            self.process = None

    def __enter__(self) -> "Synapse":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in (self.console_path, self.log_path):
            if path.exists():
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts) or "no log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- requests ---------------------------------------------------------------------------------

    def client(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.request(method, self.client_url + path, **kwargs)

    def federation(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request to the TLS federation listener, verified against the test CA (unauthenticated:
        only the key endpoints and /version answer without X-Matrix)."""
        kwargs.setdefault("timeout", 30)
        return requests.request(method, self.federation_url + path, verify=str(self.ca), **kwargs)

    def register(self, name: str = "user") -> tuple[str, str]:
        """A fresh user on this Synapse, through the client API's UIA with m.login.dummy:
        (user_id, access_token)."""
        localpart = f"{name}-{secrets.token_hex(4)}"
        body = {"username": localpart, "password": PASSWORD}
        first = self.client("POST", "/_matrix/client/v3/register", json=body)
        if first.status_code == 401:
            body["auth"] = {"type": "m.login.dummy", "session": first.json()["session"]}
            first = self.client("POST", "/_matrix/client/v3/register", json=body)
        assert first.status_code == 200, f"register on synapse: {first.status_code} {first.text}"
        return first.json()["user_id"], first.json()["access_token"]


class SynapseStandIn(Synapse):
    """A second Synapse in our Worker's place, with the few members of `Homeserver` the tests
    use. For reference runs (MATRIX_EDGE_FEDERATION_REFERENCE=synapse): the federation tests then
    show what two Synapses do, which checks the tests themselves before our side can pass them."""

    @property
    def base_url(self) -> str:
        return self.client_url

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        if path.startswith(("/_matrix/federation/", "/_matrix/key/")):
            return self.federation(method, path, **kwargs)
        return self.client(method, path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)


@dataclass
class FederationPair:
    """Our Worker (over HTTPS) and a Synapse, each able to reach the other by server name."""
    ours: Homeserver | SynapseStandIn
    synapse: Synapse
    ca: Path

    @property
    def our_name(self) -> str:
        return self.ours.server_name


def our_worker(directory: Path, ca: Path, cert: Path, key: Path, env: dict | None = None,
               entry: str | None = None) -> Homeserver:
    """Our Worker over HTTPS with the test CA's leaf, trusting that CA for its outbound fetch.
    `entry`: another entry module for scripts/serve.mjs (the benchmark's bench/meter.mjs)."""
    hs = Homeserver(directory, tls=(cert, key), ca=ca,
                    command=["bash", "scripts/dev.sh", entry] if entry else None)
    hs.extra_env.update({
        "SERVER_NAME": f"localhost:{hs.port}",
        "PUBLIC_BASEURL": f"https://localhost:{hs.port}",
        # Miniflare adds this CA to workerd's trusted certificates.
        "NODE_EXTRA_CA_CERTS": str(ca),
        **(env or {}),
    })
    return hs


@contextlib.contextmanager
def federation_pair(directory: Path, *, our_env: dict | None = None, synapse_config: dict | None = None,
                    reference: bool | None = None, our_entry: str | None = None) -> Iterator[FederationPair]:
    """Starts a Synapse and our Worker, yields them, and stops both whatever happens. With `reference` (default: the
    environment variable MATRIX_EDGE_FEDERATION_REFERENCE=synapse) a second Synapse stands in
    for our Worker."""
    if reference is None:
        reference = os.environ.get("MATRIX_EDGE_FEDERATION_REFERENCE") == "synapse"
    ca, cert, key = make_test_ca(directory / "tls")
    if reference:
        ours = SynapseStandIn(directory / "ours", ca=ca, cert=cert, key=key, config=synapse_config)
    else:
        ours = our_worker(directory / "ours", ca, cert, key, our_env, our_entry)
    synapse = Synapse(directory / "synapse", ca=ca, cert=cert, key=key, config=synapse_config)
    try:
        # Side by side: neither needs the other to start (about 3 s for Synapse, 6-8 s for us).
        # Both processes are launched from this thread; only the wait for Synapse runs in another.
        synapse.launch()
        with ThreadPoolExecutor(1) as pool:
            synapse_ready = pool.submit(synapse.wait_ready)
            ours.start()
            synapse_ready.result()
        yield FederationPair(ours, synapse, ca)
    finally:
        try:
            ours.stop()
        finally:
            synapse.stop()
