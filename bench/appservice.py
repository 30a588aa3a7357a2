"""`make bench`'s application service row: sequential sends on our Worker with no service
registered, against the same with one registered service whose URL is down (nothing listens
there) and whose namespace holds a member of the room, so every send concerns it and its queue
keeps failing and retrying. The push runs in the service's own Durable Object and never on the
send's path, so the two medians should be within noise of each other.

  python bench/appservice.py [--quick]      prints the row (run.py adds it to the report)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from collections import Counter  # noqa: E402

import requests  # noqa: E402

from client import Client  # noqa: E402
from harness import free_port  # noqa: E402
from servers import Ours  # noqa: E402

AS_TOKEN = "bench-as-token-" + "x" * 16


def _registration(path: Path, server_name: str) -> Path:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every push fails
    path.write_text(json.dumps({
        "id": "down", "url": url, "as_token": AS_TOKEN, "hs_token": "bench-hs-token-" + "y" * 16,
        "sender_localpart": "downbot",
        "namespaces": {"users": [{"exclusive": True, "regex": f"@down_.*:{server_name}"}]},
    }))
    return path


def _prepare(server: Ours, with_service: bool) -> tuple[Client, str]:
    errors: Counter = Counter()
    anon = Client(server.base_url, errors)
    alice = anon.register("alice")
    room = alice.create_room()
    if with_service:
        requests.post(f"{server.base_url}/_matrix/client/v3/register",
                      headers={"Authorization": f"Bearer {AS_TOKEN}"},
                      json={"type": "m.login.application_service", "username": "down_puppet"},
                      timeout=10).raise_for_status()
        puppet = f"@down_puppet:{server.hs.server_name}"
        requests.post(f"{server.base_url}/_matrix/client/v3/join/{room}",
                      params={"user_id": puppet}, headers={"Authorization": f"Bearer {AS_TOKEN}"},
                      json={}, timeout=10).raise_for_status()
    return alice, room


def measure(workdir: Path, sends: int, rounds: int, log=print) -> dict:
    """{"none": [seconds...], "down": [seconds...]} of sequential sends, alternating rounds."""
    plain = Ours(workdir / "as-none")
    down = Ours(workdir / "as-down")
    down.hs.extra_env["APPSERVICE_CONFIG"] = str(_registration(workdir / "down.yaml", down.hs.server_name))
    samples: dict[str, list[float]] = {"none": [], "down": []}
    try:
        plain.start()
        down.start()
        targets = {"none": _prepare(plain, False), "down": _prepare(down, True)}
        per_round = max(1, sends // rounds)
        for r in range(rounds):
            order = ["none", "down"] if r % 2 == 0 else ["down", "none"]
            for name in order:
                client, room = targets[name]
                for i in range(per_round):
                    seconds, _ = client.send(room, f"bench {r}-{i}")
                    samples[name].append(seconds)
            log(f"appservice row: round {r + 1}/{rounds}")
    finally:
        plain.stop()
        down.stop()
    return samples


def row(samples: dict) -> str:
    none, down = (statistics.median(samples[k]) * 1000 for k in ("none", "down"))
    p90 = {k: sorted(v)[int(len(v) * 0.9) - 1] * 1000 for k, v in samples.items()}
    return ("| measure | unit | no service median | no service p90 | service down median "
            "| service down p90 | down / none (median) |\n|---|---|---:|---:|---:|---:|---:|\n"
            f"| Sequential sends ({len(samples['none'])} each) with one registered application "
            f"service whose URL is down, against none | ms | {none:.1f} | {p90['none']:.1f} "
            f"| {down:.1f} | {p90['down']:.1f} | {down / none:.2f} |")


def main() -> int:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="bench-appservice-") as tmp:
        samples = measure(Path(tmp), 8 if quick else 200, 2 if quick else 4)
    print(row(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
