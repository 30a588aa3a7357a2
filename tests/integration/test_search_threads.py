"""Server-side search, threads and event filters over real HTTP, in workerd with local D1: the
FTS5 index (migrations/0019) is fed as events are persisted by the room's Durable Object.

Search: rank and recent order, paging with `next_batch` to the end, context around a result,
and permissions (a user never finds events of rooms they are not in, nor from before they could
see them). Threads: `/threads` ordering and the root's summary in /messages and /sync. Filters:
`contains_url` and MSC3874's relation types on /messages. Hostile search terms are text.
"""

from __future__ import annotations

import json

from test_rooms import V1, V3, base_url, new_user, q  # noqa: F401  (fixtures)


def search(user, term: str, *, next_batch: str | None = None, expect: int = 200, **criteria) -> dict:
    body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
    params = {"next_batch": next_batch} if next_batch else None
    answer = user.post(f"{V3}/search", body, params=params, expect=expect).json()
    return answer["search_categories"]["room_events"] if expect == 200 else answer


def found_ids(found: dict) -> list[str]:
    return [r["result"]["event_id"] for r in found["results"]]


def test_search_orders_pages_and_gives_context(new_user):
    alice = new_user("alice")
    room = alice.create_room(preset="private_chat")
    sent = [alice.send(room, f"Harvest report number {i}") for i in range(12)]
    alice.send(room, "unrelated chatter")

    # Recent order, pages of 5 down to the oldest; `count` stays the total.
    pages, token = [], None
    while True:
        found = search(alice, "harvest", order_by="recent", filter={"limit": 5, "rooms": [room]},
                       next_batch=token)
        assert found["count"] == 12, found
        pages.append(found_ids(found))
        token = found.get("next_batch")
        if token is None:
            break
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sum(pages, []) == list(reversed(sent))

    # Rank order: every result has a rank, best first; all words must match.
    found = search(alice, "report 7", filter={"rooms": [room]})
    assert found_ids(found) == [sent[7]]
    assert isinstance(found["results"][0]["rank"], (int, float))
    assert "report" in found["highlights"]

    # Context around a result, newest first before it, oldest first after it.
    found = search(alice, "number 5", order_by="recent", filter={"rooms": [room]},
                   event_context={"before_limit": 2, "after_limit": 2, "include_profile": True})
    context = found["results"][0]["context"]
    assert [e["content"]["body"] for e in context["events_before"]] == [
        "Harvest report number 4", "Harvest report number 3"]
    assert [e["content"]["body"] for e in context["events_after"]] == [
        "Harvest report number 6", "Harvest report number 7"]
    assert alice.user_id in context["profile_info"]


def test_search_only_finds_what_the_user_may_see(new_user):
    alice, bob, eve = new_user("alice"), new_user("bob"), new_user("eve")
    room = alice.create_room(preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "joined"}}])
    alice.send(room, "zebra before bob")
    bob.join(room)
    after = alice.send(room, "zebra after bob")
    private = alice.create_room(preset="private_chat")
    alice.send(private, "zebra in private")

    assert found_ids(search(bob, "zebra")) == [after]
    assert search(bob, "zebra")["count"] == 1
    # Naming a room one is not in finds nothing in it.
    assert found_ids(search(eve, "zebra", filter={"rooms": [room, private]})) == []
    assert search(alice, "zebra")["count"] == 3
    # Redacted events are not found, in either order.
    redacted = alice.send(room, "zebra to redact")
    alice.put(f"{V3}/rooms/{q(room)}/redact/{q(redacted)}/r1", {})
    for order in ("rank", "recent"):
        assert redacted not in found_ids(search(alice, "zebra", order_by=order))


def test_hostile_search_terms_are_text(new_user):
    alice = new_user("alice")
    room = alice.create_room()
    event = alice.send(room, "NEAR the gate OR body")
    for term in ['"', '*', '(', 'NEAR(', 'body:x', '{body}: x', '-', '^x', 'AND', 'a OR',
                 "'; DROP TABLE events; --", 'x"y*z', '🙂' * 50, 'w ' * 500]:
        search(alice, term)
    assert found_ids(search(alice, "near(the gate)")) == [event]
    search(alice, "x", keys=["content.url"], expect=400)
    search(alice, "x", order_by="recent", next_batch="r5", expect=400)


def test_threads_endpoint_and_summaries(new_user):
    alice, bob = new_user("alice"), new_user("bob")
    room = alice.create_room(preset="public_chat")
    bob.join(room)

    def reply(user, root: str, body: str) -> str:
        return user.send(room, {"msgtype": "m.text", "body": body,
                                "m.relates_to": {"rel_type": "m.thread", "event_id": root}})

    root1 = alice.send(room, "Thread 1 root")
    root2 = bob.send(room, "Thread 2 root")
    reply(alice, root1, "first reply")
    latest2 = reply(bob, root2, "second thread reply")
    latest1 = reply(bob, root1, "newest reply")

    threads = alice.get(f"{V1}/rooms/{q(room)}/threads").json()["chunk"]
    assert [t["event_id"] for t in threads] == [root1, root2]
    summary = threads[0]["unsigned"]["m.relations"]["m.thread"]
    assert summary["latest_event"]["event_id"] == latest1
    assert summary["count"] == 2 and summary["current_user_participated"] is True
    other = threads[1]["unsigned"]["m.relations"]["m.thread"]
    assert other["latest_event"]["event_id"] == latest2 and other["current_user_participated"] is False
    mine = alice.get(f"{V1}/rooms/{q(room)}/threads", params={"include": "participated"}).json()
    assert [t["event_id"] for t in mine["chunk"]] == [root1]
    first = alice.get(f"{V1}/rooms/{q(room)}/threads", params={"limit": 1}).json()
    rest = alice.get(f"{V1}/rooms/{q(room)}/threads",
                     params={"limit": 1, "from": first["next_batch"]}).json()
    assert [t["event_id"] for t in rest["chunk"]] == [root2]

    # The same summary on the root in /messages and in /sync.
    chunk = alice.messages(room, dir="b", limit=20)["chunk"]
    root = next(e for e in chunk if e["event_id"] == root1)
    assert root["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    sync = bob.get(f"{V3}/sync").json()
    timeline = sync["rooms"]["join"][room]["timeline"]["events"]
    root = next(e for e in timeline if e["event_id"] == root2)
    assert root["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == latest2
    assert root["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is True

    # MSC3874: /messages filtered by the events' relation type.
    only = alice.messages(room, dir="b", filter=json.dumps({"org.matrix.msc3874.rel_types": ["m.thread"]}))
    assert {e["event_id"] for e in only["chunk"]} == {latest1, latest2, *(
        e["event_id"] for e in chunk if e.get("content", {}).get("body") == "first reply")}
    without = alice.messages(room, dir="b", filter=json.dumps({"org.matrix.msc3874.not_rel_types": ["m.thread"]}))
    assert latest1 not in {e["event_id"] for e in without["chunk"]}


def test_messages_contains_url_filter(new_user):
    alice = new_user("alice")
    room = alice.create_room()
    image = alice.send(room, {"msgtype": "m.image", "body": "cat.png", "url": "mxc://example.org/cat"})
    text = alice.send(room, "no url here")
    with_url = alice.messages(room, dir="b", filter=json.dumps({"contains_url": True}))
    assert [e["event_id"] for e in with_url["chunk"]] == [image]
    without = alice.messages(room, dir="b", filter=json.dumps({"contains_url": False}))
    ids = [e["event_id"] for e in without["chunk"]]
    assert text in ids and image not in ids


def test_search_costs_a_fixed_number_of_queries(server, new_user):
    """Bounded work (docs/design.md, invariant 5): a search with context, profiles, groups and
    state costs the same number of D1 queries for a user in 2 rooms and one in 12."""

    def cost(rooms: int) -> tuple[int, int]:
        user = new_user("searcher")
        for i in range(rooms):
            room = user.create_room(name=f"room {i}")
            user.send(room, f"needle number {i}")
            user.send(room, "hay")
        response = user.call("POST", f"{V3}/search", json={"search_categories": {"room_events": {
            "search_term": "needle", "filter": {"limit": 20}, "include_state": True,
            "event_context": {"before_limit": 2, "after_limit": 2, "include_profile": True},
            "groupings": {"group_by": [{"key": "room_id"}]}}}})
        found = response.json()["search_categories"]["room_events"]
        assert found["count"] == rooms and len(found["state"]) == rooms, found["count"]
        assert all(r["context"]["events_after"] for r in found["results"])
        return int(response.headers["X-D1-Queries"]), int(response.headers["X-D1-Rows-Read"])

    few, many = cost(2), cost(12)
    assert few[0] == many[0] < 12, (few, many)
    print(f"\nD1 per search (context, profiles, groups, state): {few[0]} queries for 2 rooms, "
          f"{many[0]} for 12; rows read {few[1]} and {many[1]}")
