"""A real client against the homeserver: matrix-js-sdk driving two users through a private room.

The driver is tests/clients/js/scenario.mjs (registration with user-interactive auth, sync,
room creation, invite and join, messages both ways, typing, a read receipt, a redaction, a
displayname change, logout); it prints one JSON line per step and exits 0 only if all passed.
It was validated against Synapse, so a failure here is a failure of this server.

It needs Node 22 or newer (matrix-js-sdk's engines) and the npm packages from package-lock.json,
both installed by scripts/setup.sh. scripts/test.sh exports the Node it set up as MATRIX_EDGE_NODE;
run directly, pytest falls back to the cached Node that scripts/env.sh puts first on PATH.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import ROOT

SCENARIO = ROOT / "tests" / "clients" / "js" / "scenario.mjs"
NODE_MIN_MAJOR = 22


def find_node() -> str:
    """MATRIX_EDGE_NODE, else the cached Node of scripts/env.sh (same cache rule), else PATH's node."""
    if os.environ.get("MATRIX_EDGE_NODE"):
        return os.environ["MATRIX_EDGE_NODE"]
    cache = Path(os.environ.get("MATRIX_EDGE_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matrix-edge")
    cached = cache / "node" / "bin" / "node"
    if cached.exists():
        return str(cached)
    return shutil.which("node") or "node"


def node_major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def run_node_script(server, script: Path, timeout: int = 180) -> None:
    """Runs a driver script against the server; fails with its output unless every step passed."""
    node = find_node()
    assert node_major(node) >= NODE_MIN_MAJOR, (
        f"{node} is missing or older than Node {NODE_MIN_MAJOR}; run scripts/setup.sh or set MATRIX_EDGE_NODE")
    assert (ROOT / "node_modules" / "matrix-js-sdk" / "package.json").exists(), \
        "matrix-js-sdk is not installed; run scripts/setup.sh"

    try:
        result = subprocess.run([node, str(script), server.base_url], cwd=ROOT, capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} still running after {timeout} s\nstdout:\n{exc.stdout or ''}\n"
                    f"stderr:\n{exc.stderr or ''}\nserver log (tail):\n{server.log()}")

    steps = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failed = [s for s in steps if not s.get("ok")]
    assert result.returncode == 0 and steps and not failed, (
        f"{script.name} exited {result.returncode}"
        + (f"; failing step: {failed[0]['step']}: {failed[0].get('error')}" if failed else "")
        + f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\nserver log (tail):\n{server.log()}")


def test_matrix_js_sdk_scenario(server):
    run_node_script(server, SCENARIO)
