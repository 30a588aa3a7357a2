"""D1 rows written per message, pinned: the platform bills every table row and index entry a
write touches, and rows written are what caps the free plan (docs/benchmarks.md, "Platform cost
per operation"). The Worker runs behind bench/meter.mjs, which counts D1's own
`meta.rows_written` per statement, so a change that adds a row to every message fails here.

A plain message in a room of two local members writes its event row with two index entries
(`event_id`, `events_by_room`) and its search entry: 4. Its notification of the other member,
its transaction id and the rate counters write no row of their own (migrations/0029,
src/rooms/object/transactions.rs, src/limits/rate.rs).
"""

from __future__ import annotations

import pytest

from harness import Homeserver
from test_sync import User, joined

ROWS_PER_MESSAGE = 4
MESSAGES = 5


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    hs = Homeserver(tmp_path_factory.mktemp("metered") / "state",
                    command=["bash", "scripts/dev.sh", "bench/meter.mjs"])
    with hs:
        yield hs


def meter(server) -> dict:
    """What the Worker and its Durable Objects did since the last call (and a reset)."""
    response = server.get("/_bench/meter")
    assert response.status_code == 200, response.text
    return response.json()


def written_by_statement(counts: dict) -> dict[str, int]:
    return {sql.split(" (")[0]: s["rows_written"] for sql, s in counts["statements"].items()
            if s["rows_written"]}


def test_a_message_writes_four_rows_and_a_retry_none(metered):
    alice, bob = User(metered, "alice"), User(metered, "bob")
    room_id = alice.create_room(preset="private_chat", invite=[bob.user_id])
    bob.join(room_id)
    path = f"/rooms/{room_id}/send/m.room.message"
    alice.ok("PUT", f"{path}/warm", json={"msgtype": "m.text", "body": "warm up"})
    meter(metered)

    sent = [alice.ok("PUT", f"{path}/t{i}", json={"msgtype": "m.text", "body": f"hello {i}"})["event_id"]
            for i in range(MESSAGES)]
    counts = meter(metered)
    assert written_by_statement(counts) == {
        "INSERT INTO events": 3 * MESSAGES,
        "INSERT INTO event_search": MESSAGES,
    }, counts["statements"]
    assert counts["rows_written"] == ROWS_PER_MESSAGE * MESSAGES

    # A retried transaction answers the first event and writes nothing.
    again = alice.ok("PUT", f"{path}/t0", json={"msgtype": "m.text", "body": "hello 0"})
    assert again["event_id"] == sent[0]
    assert meter(metered)["rows_written"] == 0

    # What the rows left out still works: Bob is notified of each message (the `push` column
    # of the event rows), and the retry did not add a sixth.
    room = joined(bob.sync(filter={"room": {"timeline": {"limit": 1}}}), room_id)
    assert room["unread_notifications"]["notification_count"] == MESSAGES + 1
