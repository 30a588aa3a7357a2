"""The two servers under test: ours (tests/integration/harness.py's Homeserver, i.e. scripts/dev.sh:
the built release wasm in local workerd with local D1 and Durable Objects) and a Synapse from PyPI
(SQLite, loopback only, rate limits relaxed, open registration, a fresh data directory).
Both always stop their processes: `stop()` is idempotent and the runner calls it in `finally`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from harness import Homeserver, processes_mentioning  # noqa: E402


def remove_workdir(workdir: Path, keep: bool, log) -> None:
    """The runners' last step: the work directory goes, unless asked to keep it."""
    if keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by these processes, all threads, in nanosecond resolution
    (/proc/PID/task/TID/schedstat; /proc/PID/stat counts in 10 ms ticks)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wait_ready(url: str, alive, timeout: float, up=None) -> tuple[float, float]:
    """Waits until the server is up, then until `url` answers 200: (time when it did, latency of
    that request). `up` says whether the server has said it is up without being asked (ours writes
    a file when workerd accepts, scripts/serve.mjs): the request timed is then the server's first.
    Without it (Synapse, which listens only once it is up) the port is polled. Every 10 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server exited before answering {url}")
        if up is None or up():
            start = time.perf_counter()
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    return time.perf_counter(), time.perf_counter() - start
            except requests.RequestException:
                pass
        time.sleep(0.01)
    raise RuntimeError(f"no answer from {url} after {timeout}s")


def launch(hs: Homeserver, *, cwd: Path, env: dict, url: str, timeout: float, up=None) -> tuple[float, float]:
    """Starts hs.command in a session of its own (so that hs.stop() finds and ends all of it) and
    waits for `url` (see wait_ready): (seconds from start to the first answer, latency of that
    answer). Finer than Homeserver.start(), to time the start."""
    t0 = time.perf_counter()
    hs.process = subprocess.Popen(hs.command, cwd=cwd, env=env, stdout=open(hs.log_path, "ab"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready, first = wait_ready(url, lambda: hs.process.poll() is None, timeout, up)
    except Exception:
        hs.stop()
        raise RuntimeError(f"{hs.command[0]} did not start; log: {hs.log_path}")
    return ready - t0, first


class Ours:
    name = "ours"

    def __init__(self, workdir: Path, entry: str | None = None):
        # A bench-only entry (bench/meter.mjs) is passed through dev.sh to scripts/serve.mjs.
        command = ["bash", "scripts/dev.sh"] + ([entry] if entry else [])
        self.hs = Homeserver(workdir / ("state-meter" if entry else "state"), command=command,
                             env={"AUTH_REQUESTS_PER_MINUTE": "1000000", "PRESENCE": "false"})
        self.hs.log_path = workdir / ("ours-meter.log" if entry else "ours.log")
        self.base_url = f"http://127.0.0.1:{self.hs.port}"
        self.startup_s = self.first_request_s = None

    def start(self) -> "Ours":
        env = dict(os.environ, PORT=str(self.hs.port),
                   STATE_DIR=str(self.hs.state_dir), MATRIX_EDGE_PREBUILT="1", **self.hs.extra_env)
        # `make dev` starts a fresh state from a migrated template that its first run with a new
        # set of migrations makes (a separate wrangler applying them, seconds): made here,
        # untimed, so that the start measured is the one a developer sees every time after that.
        scratch = self.hs.state_dir.parent / (self.hs.state_dir.name + "-template")
        subprocess.run(["bash", "scripts/dev.sh"], cwd=ROOT, check=True, capture_output=True,
                       env=dict(env, STATE_DIR=str(scratch), MATRIX_EDGE_PREPARE_ONLY="1"))
        shutil.rmtree(scratch, ignore_errors=True)
        self.hs.state_dir.mkdir(parents=True, exist_ok=True)
        serving = self.hs.state_dir / ".serving"
        serving.unlink(missing_ok=True)
        self.startup_s, self.first_request_s = launch(
            self.hs, cwd=ROOT, env=env, url=self.base_url + "/_matrix/client/versions", timeout=180,
            up=serving.exists)
        return self

    def all_pids(self) -> list[int]:
        """Every process of the instance's session: scripts/serve.mjs (node, which starts workerd
        and prints the Worker's console output) and workerd."""
        return processes_mentioning(str(self.hs.state_dir))

    def pids(self) -> list[int]:
        """The runtime alone: workerd, which runs the Worker, its Durable Objects and local D1."""
        return [p for p in self.all_pids() if _comm(p) == "workerd"]

    def stop(self) -> None:
        self.hs.stop()


SYNAPSE_OVERRIDES = """\
server_name: "{name}"
pid_file: "{dir}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client, media]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/homeserver.db"
log_config: "{dir}/log.config"
media_store_path: "{dir}/media_store"
enable_registration: true
enable_registration_without_verification: true
report_stats: false
trusted_key_servers: []
# Presence is off on both servers (our PRESENCE=false): presence changes would wake /sync long-polls.
presence:
  enabled: false
# Synapse caches a /sync answer for 2 minutes by default; repeated identical requests (an empty
# incremental sync, a repeated initial sync) would then measure the cache, not the server.
caches:
  sync_response_cache_duration: 0
rc_message: {{per_second: 100000, burst_count: 100000}}
rc_registration: {{per_second: 100000, burst_count: 100000}}
rc_login:
  address: {{per_second: 100000, burst_count: 100000}}
  account: {{per_second: 100000, burst_count: 100000}}
  failed_attempts: {{per_second: 100000, burst_count: 100000}}
rc_joins:
  local: {{per_second: 100000, burst_count: 100000}}
  remote: {{per_second: 100000, burst_count: 100000}}
rc_joins_per_room: {{per_second: 100000, burst_count: 100000}}
rc_room_creation: {{per_second: 100000, burst_count: 100000}}
rc_invites:
  per_room: {{per_second: 100000, burst_count: 100000}}
  per_user: {{per_second: 100000, burst_count: 100000}}
  per_issuer: {{per_second: 100000, burst_count: 100000}}
"""

SYNAPSE_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: "{dir}/homeserver.log"
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: INFO
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


class Synapse:
    """Synapse from the test venv, configured as PEERS.md says, in `workdir/synapse`. Stopped by
    harness.Homeserver's stop(), which also kills whatever still names that directory."""
    name = "synapse"

    def __init__(self, workdir: Path, python: str = sys.executable):
        self.dir = workdir / "synapse"
        self.config, self.overrides = self.dir / "homeserver.yaml", self.dir / "overrides.yaml"
        self.python = python
        self.hs = Homeserver(self.dir, command=[python, "-m", "synapse.app.homeserver",
                                                "-c", str(self.config), "-c", str(self.overrides)])
        self.hs.log_path = workdir / "synapse.log"
        self.port = self.hs.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.startup_s = self.first_request_s = None

    def start(self) -> "Synapse":
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([self.python, "-m", "synapse.app.homeserver", "--generate-config",
                        "-H", "localhost", "--config-path", str(self.config), "--data-directory", str(self.dir),
                        "--report-stats=no"], cwd=self.dir, check=True, capture_output=True)
        self.overrides.write_text(SYNAPSE_OVERRIDES.format(name=f"localhost:{self.port}", dir=self.dir, port=self.port))
        (self.dir / "log.config").write_text(SYNAPSE_LOG_CONFIG.format(dir=self.dir))
        self.startup_s, self.first_request_s = launch(
            self.hs, cwd=self.dir, env=dict(os.environ), url=self.base_url + "/_matrix/client/versions", timeout=120)
        return self

    def pids(self) -> list[int]:
        return [self.hs.process.pid] if self.hs.process else []

    all_pids = pids

    def stop(self) -> None:
        self.hs.stop()
