"""Our sliding sync answers next to Synapse's for one scenario: a user in N rooms (default 50),
a first answer for Element X's room list (range 0-19, timeline_limit 1, its required_state),
then a new message in one room and the incremental answer. Prints, per answer, the top-level
and per-room fields each server sent and where they differ, the list order of each, and the
time of each answer (with our D1 cost from the X-D1-* headers).

    python tests/element_x/compare.py [--rooms 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import our_server, register, synapse_server, call  # noqa: E402

# Element X's room-list request, the one `make bench` times (bench/sliding.py).
sys.path.append(str(HERE.parents[1] / "bench"))
from sliding import SLIDING, request  # noqa: E402

BODY = request("room-list")


def scenario(base: str, rooms: int) -> dict:
    user = register(base, "cmp")
    ids = []
    for i in range(rooms):
        room = call(base, user, "POST", "/createRoom", {"name": f"room {i}"})["room_id"]
        call(base, user, "PUT", f"/rooms/{room}/send/m.room.message/m{i}", {"msgtype": "m.text", "body": f"m{i}"})
        ids.append(room)
    headers = {"Authorization": f"Bearer {user['token']}"}
    started = time.monotonic()
    first = requests.post(base + SLIDING, json=BODY, headers=headers, params={"timeout": 0}, timeout=60)
    first_ms = (time.monotonic() - started) * 1000
    call(base, user, "PUT", f"/rooms/{ids[3]}/send/m.room.message/new", {"msgtype": "m.text", "body": "new"})
    started = time.monotonic()
    second = requests.post(base + SLIDING, json=BODY, headers=headers,
                           params={"timeout": 10000, "pos": first.json()["pos"]}, timeout=60)
    second_ms = (time.monotonic() - started) * 1000
    cost = lambda r: "/".join(r.headers.get(h, "-") for h in ("X-D1-Queries", "X-D1-Rows-Read", "X-D1-Rows-Written"))
    return {"ids": ids, "first": first.json(), "second": second.json(),
            "cost": {"first": f"{first_ms:.0f} ms, D1 queries/rows read/written {cost(first)}",
                     "incremental": f"{second_ms:.0f} ms, D1 queries/rows read/written {cost(second)}"}}


def shape(answer: dict, ids: list[str]) -> dict:
    rooms = answer.get("rooms", {})
    order = sorted(rooms, key=lambda r: -rooms[r].get("bump_stamp", 0))
    fields = sorted({k for r in rooms.values() for k in r})
    state_types = sorted({e["type"] for r in rooms.values() for e in r.get("required_state", [])})
    return {"top": sorted(answer), "count": answer.get("lists", {}).get("all_rooms", {}).get("count"),
            "rooms": len(rooms), "order (room index)": [ids.index(r) for r in order],
            "room fields": fields, "required_state types": state_types,
            "timeline sizes": sorted({len(r.get("timeline", [])) for r in rooms.values()}),
            "extensions": sorted(answer.get("extensions", {}))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=50)
    args = parser.parse_args()
    out = {}
    for name, server in (("synapse", synapse_server), ("ours", our_server)):
        with tempfile.TemporaryDirectory(prefix=f"compare-{name}-") as tmp, server(Path(tmp)) as base:
            result = scenario(base, args.rooms)
            out[name] = {step: shape(result[step], result["ids"]) for step in ("first", "second")}
            out[name]["example room (incremental)"] = next(iter(result["second"].get("rooms", {}).values()), None)
            out[name]["cost"] = result["cost"]
    for step in ("first", "second"):
        print(f"== {step} answer")
        for key in out["ours"][step]:
            a, b = out["synapse"][step][key], out["ours"][step][key]
            mark = "  " if a == b else "!="
            print(f"{mark} {key}:\n     synapse {a}\n     ours    {b}")
    print("== an incremental room, Synapse then ours")
    for name in ("synapse", "ours"):
        room = out[name]["example room (incremental)"] or {}
        room = {k: (v if k not in ("timeline", "required_state") else [e.get("type") for e in v]) for k, v in room.items()}
        print(name, json.dumps(room, sort_keys=True))
    print(f"== time and cost for {args.rooms} rooms (one run each, loopback)")
    for name in ("synapse", "ours"):
        print(name, out[name]["cost"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
