"""Per-user endpoints over real HTTP: account data and tags, push rules, profiles and
capabilities, and how their changes reach /sync. Uses test_sync's `User` (every call < 500).
"""

from __future__ import annotations

from test_sync import User, joined, shared_room


def account_data_events(body: dict, room_id: str | None = None) -> list[dict]:
    if room_id is None:
        return body["account_data"]["events"]
    return joined(body, room_id)["account_data"]["events"]


def error(response, status: int, errcode: str) -> None:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.json()["errcode"] == errcode, response.text


# -- account data --------------------------------------------------------------------------

def test_global_account_data_round_trips_and_reaches_sync(server):
    alice = User(server, "alice")
    path = f"/user/{alice.user_id}/account_data/org.example.settings"
    error(alice.call("GET", path, status=None), 404, "M_NOT_FOUND")
    since = alice.sync()["next_batch"]
    assert alice.ok("PUT", path, json={"theme": "dark", "n": [1, 2]}) == {}
    assert alice.ok("GET", path) == {"theme": "dark", "n": [1, 2]}
    event = {"type": "org.example.settings", "content": {"theme": "dark", "n": [1, 2]}}
    body = alice.sync(since)
    assert event in account_data_events(body)
    assert event in account_data_events(alice.sync())
    # An update replaces the content and comes down again; nothing new, nothing repeated.
    alice.ok("PUT", path, json={"theme": "light"})
    body = alice.sync(body["next_batch"])
    assert account_data_events(body) == [{"type": "org.example.settings", "content": {"theme": "light"}}]
    assert account_data_events(alice.sync(body["next_batch"])) == []
    # The account_data filter applies.
    filtered = alice.sync(filter={"account_data": {"not_types": ["org.example.*"]}})
    assert "org.example.settings" not in {e["type"] for e in account_data_events(filtered)}


def test_room_account_data_round_trips_and_reaches_sync(server):
    alice = User(server, "alice")
    room_id = alice.create_room()
    path = f"/user/{alice.user_id}/rooms/{room_id}/account_data/org.example.room"
    error(alice.call("GET", path, status=None), 404, "M_NOT_FOUND")
    since = alice.sync()["next_batch"]
    assert alice.ok("PUT", path, json={"pinned": True}) == {}
    assert alice.ok("GET", path) == {"pinned": True}
    event = {"type": "org.example.room", "content": {"pinned": True}}
    assert event in account_data_events(alice.sync(since), room_id)
    assert event in account_data_events(alice.sync(), room_id)
    # Room account data is not global account data.
    assert event not in account_data_events(alice.sync())
    error(alice.call("GET", f"/user/{alice.user_id}/account_data/org.example.room", status=None),
          404, "M_NOT_FOUND")


def test_server_managed_account_data_types_are_refused(server):
    alice = User(server, "alice")
    room_id = alice.create_room()
    for path in (f"/user/{alice.user_id}/account_data/m.fully_read",
                 f"/user/{alice.user_id}/account_data/m.push_rules",
                 f"/user/{alice.user_id}/rooms/{room_id}/account_data/m.fully_read"):
        error(alice.call("PUT", path, json={"event_id": "$x"}, status=None), 405, "M_BAD_JSON")


def test_account_data_of_another_user_is_forbidden(server):
    alice, bob = User(server, "alice"), User(server, "bob")
    room_id = alice.create_room()
    alice.ok("PUT", f"/user/{alice.user_id}/account_data/org.example.secret", json={"s": 1})
    for method, path in (("GET", f"/user/{alice.user_id}/account_data/org.example.secret"),
                         ("PUT", f"/user/{alice.user_id}/account_data/org.example.secret"),
                         ("GET", f"/user/{alice.user_id}/rooms/{room_id}/account_data/org.example.r"),
                         ("PUT", f"/user/{alice.user_id}/rooms/{room_id}/account_data/org.example.r"),
                         ("GET", f"/user/{alice.user_id}/rooms/{room_id}/tags"),
                         ("PUT", f"/user/{alice.user_id}/rooms/{room_id}/tags/u.x")):
        response = bob.call(method, path, json={}, status=None)
        error(response, 403, "M_FORBIDDEN")
    assert alice.ok("GET", f"/user/{alice.user_id}/account_data/org.example.secret") == {"s": 1}


def test_tags_put_get_delete_and_m_tag_in_sync(server):
    alice = User(server, "alice")
    room_id = alice.create_room()
    tags = f"/user/{alice.user_id}/rooms/{room_id}/tags"
    assert alice.ok("GET", tags) == {"tags": {}}
    since = alice.sync()["next_batch"]
    assert alice.ok("PUT", f"{tags}/u.work", json={"order": 0.25}) == {}
    alice.ok("PUT", f"{tags}/m.favourite", json={})
    assert alice.ok("GET", tags) == {"tags": {"u.work": {"order": 0.25}, "m.favourite": {}}}
    body = alice.sync(since)
    tag_events = [e for e in account_data_events(body, room_id) if e["type"] == "m.tag"]
    assert tag_events == [{"type": "m.tag",
                           "content": {"tags": {"u.work": {"order": 0.25}, "m.favourite": {}}}}]
    assert alice.ok("DELETE", f"{tags}/u.work") == {}
    assert alice.ok("GET", tags) == {"tags": {"m.favourite": {}}}
    body = alice.sync(body["next_batch"])
    tag_events = [e for e in account_data_events(body, room_id) if e["type"] == "m.tag"]
    assert tag_events == [{"type": "m.tag", "content": {"tags": {"m.favourite": {}}}}]
    bad = alice.call("PUT", f"{tags}/u.bad", json={"order": "first"}, status=None)
    assert 400 <= bad.status_code < 500


# -- push rules ----------------------------------------------------------------------------

DEFAULT_OVERRIDE = [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
                    ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention",
                    ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
                    ".m.rule.suppress_edits"]
DEFAULT_UNDERRIDE = [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
                     ".m.rule.message", ".m.rule.encrypted"]
KINDS = {"override", "content", "room", "sender", "underride"}


def ids(rules: list[dict]) -> list[str]:
    return [r["rule_id"] for r in rules]


def test_default_push_rules(server):
    alice = User(server, "alice")
    rules = alice.ok("GET", "/pushrules/")
    assert set(rules) == {"global"} and set(rules["global"]) == KINDS
    assert rules == alice.ok("GET", "/pushrules")
    assert alice.ok("GET", "/pushrules/global/") == rules["global"]
    glob = rules["global"]
    assert ids(glob["override"])[0] == ".m.rule.master"
    master = glob["override"][0]
    assert master == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                      "conditions": [], "actions": []}
    # Exactly the spec's predefined rules, in its order (v1.17 removed the legacy mention rules,
    # .m.rule.contains_user_name among them, so there are no default content rules).
    assert ids(glob["override"]) == DEFAULT_OVERRIDE
    assert ids(glob["underride"]) == DEFAULT_UNDERRIDE
    assert glob["content"] == []
    assert glob["room"] == [] and glob["sender"] == []
    for kind in KINDS:
        for rule in glob[kind]:
            assert rule["default"] is True and isinstance(rule["enabled"], bool)
            assert isinstance(rule["actions"], list)
            assert ("conditions" in rule) == (kind in ("override", "underride")), rule
            assert ("pattern" in rule) == (kind == "content"), rule
    message = next(r for r in glob["underride"] if r["rule_id"] == ".m.rule.message")
    assert message["actions"] == ["notify"]
    assert message["conditions"] == [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}]


def test_user_push_rules_lifecycle(server):
    alice = User(server, "alice")
    since = alice.sync()["next_batch"]
    base = "/pushrules/global/override"

    def rule_body(word: str) -> dict:
        return {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": word}],
                "actions": ["notify", {"set_tweak": "sound", "value": "default"}]}

    assert alice.ok("PUT", f"{base}/one", json=rule_body("one")) == {}
    alice.ok("PUT", f"{base}/two", json=rule_body("two"), params={"before": "one"})
    alice.ok("PUT", f"{base}/three", json=rule_body("three"), params={"after": "one"})
    overrides = ids(alice.ok("GET", "/pushrules/")["global"]["override"])
    # Master first, then the user's rules in the order asked for, then the other defaults.
    assert overrides[:4] == [".m.rule.master", "two", "one", "three"], overrides
    assert alice.ok("GET", f"{base}/one") == {"rule_id": "one", "default": False, "enabled": True,
                                               **rule_body("one")}
    # Relative to a server default rule, or to a rule that does not exist: refused.
    for params in ({"before": ".m.rule.master"}, {"after": "no-such-rule"}):
        response = alice.call("PUT", f"{base}/four", json=rule_body("four"), params=params, status=None)
        assert 400 <= response.status_code < 500, params
    assert "four" not in ids(alice.ok("GET", "/pushrules/")["global"]["override"])
    # A rule id may not start with a dot: those are the server's.
    response = alice.call("PUT", f"{base}/.mine", json=rule_body("x"), status=None)
    assert 400 <= response.status_code < 500

    assert alice.ok("GET", f"{base}/one/enabled") == {"enabled": True}
    assert alice.ok("PUT", f"{base}/one/enabled", json={"enabled": False}) == {}
    assert alice.ok("GET", f"{base}/one/enabled") == {"enabled": False}
    assert alice.ok("PUT", f"{base}/one/actions", json={"actions": []}) == {}
    assert alice.ok("GET", f"{base}/one/actions") == {"actions": []}
    assert alice.ok("GET", f"{base}/one")["actions"] == []
    # A default rule can be disabled and given new actions.
    alice.ok("PUT", "/pushrules/global/underride/.m.rule.message/enabled", json={"enabled": False})
    assert alice.ok("GET", "/pushrules/global/underride/.m.rule.message/enabled") == {"enabled": False}

    body = alice.sync(since)
    pushed = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert pushed, "push rule changes must reach /sync as m.push_rules account data"
    synced = pushed[-1]["content"]["global"]
    assert ids(synced["override"])[:4] == [".m.rule.master", "two", "one", "three"]
    assert next(r for r in synced["override"] if r["rule_id"] == "one")["enabled"] is False

    assert alice.ok("DELETE", f"{base}/one") == {}
    error(alice.call("GET", f"{base}/one", status=None), 404, "M_NOT_FOUND")
    error(alice.call("DELETE", f"{base}/one", status=None), 404, "M_NOT_FOUND")
    assert ids(alice.ok("GET", "/pushrules/")["global"]["override"])[:3] == [
        ".m.rule.master", "two", "three"]
    body = alice.sync(body["next_batch"])
    pushed = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert pushed and "one" not in ids(pushed[-1]["content"]["global"]["override"])


def test_push_rule_errors(server):
    alice = User(server, "alice")
    deleted = alice.call("DELETE", "/pushrules/global/override/.m.rule.master", status=None)
    assert 400 <= deleted.status_code < 500
    assert ".m.rule.master" in ids(alice.ok("GET", "/pushrules/")["global"]["override"])
    error(alice.call("GET", "/pushrules/global/override/no-such-rule", status=None), 404, "M_NOT_FOUND")
    for path in ("/pushrules/device/", "/pushrules/device/override/x", "/pushrules/global/nokind/x"):
        response = alice.call("GET", path, status=None)
        assert 400 <= response.status_code < 500, path
    response = alice.call("PUT", "/pushrules/global/override/bad", json={"actions": "notify"}, status=None)
    assert 400 <= response.status_code < 500
    # A content rule needs a pattern.
    response = alice.call("PUT", "/pushrules/global/content/nopattern", json={"actions": ["notify"]},
                          status=None)
    assert 400 <= response.status_code < 500
    response = alice.call("PUT", "/pushrules/global/override/one/enabled", json={"enabled": "yes"},
                          status=None)
    assert 400 <= response.status_code < 500


# -- profile -------------------------------------------------------------------------------

def test_profile_updates_reach_profile_members_and_sync(server):
    room_id, (alice, bob) = shared_room(server, "alice", "bob")
    bob_since = bob.sync()["next_batch"]
    name, avatar = "Alice Liddell", "mxc://example.org/alice"
    assert alice.ok("PUT", f"/profile/{alice.user_id}/displayname", json={"displayname": name}) == {}
    assert alice.ok("PUT", f"/profile/{alice.user_id}/avatar_url", json={"avatar_url": avatar}) == {}
    assert alice.ok("GET", f"/profile/{alice.user_id}") == {"displayname": name, "avatar_url": avatar}
    assert bob.ok("GET", f"/profile/{alice.user_id}/displayname") == {"displayname": name}
    assert bob.ok("GET", f"/profile/{alice.user_id}/avatar_url") == {"avatar_url": avatar}

    members = bob.ok("GET", f"/rooms/{room_id}/joined_members")["joined"]
    assert members[alice.user_id] == {"display_name": name, "avatar_url": avatar}

    timeline = joined(bob.sync(bob_since), room_id)["timeline"]["events"]
    updates = [e for e in timeline if e["type"] == "m.room.member" and e["state_key"] == alice.user_id]
    assert updates, "bob's sync must carry alice's new member event"
    assert updates[-1]["content"]["membership"] == "join"
    assert updates[-1]["content"]["displayname"] == name
    assert updates[-1]["content"]["avatar_url"] == avatar
    state = bob.ok("GET", f"/rooms/{room_id}/state/m.room.member/{alice.user_id}")
    assert state["displayname"] == name and state["membership"] == "join"

    error(alice.call("PUT", f"/profile/{bob.user_id}/displayname", json={"displayname": "x"},
                     status=None), 403, "M_FORBIDDEN")
    assert "displayname" not in bob.ok("GET", f"/profile/{bob.user_id}") or \
        bob.ok("GET", f"/profile/{bob.user_id}")["displayname"] != "x"
    error(alice.call("GET", "/profile/@nobody-here:" + alice.user_id.split(":", 1)[1], status=None),
          404, "M_NOT_FOUND")


# -- capabilities --------------------------------------------------------------------------

def test_capabilities(server):
    alice = User(server, "alice")
    caps = alice.ok("GET", "/capabilities")["capabilities"]
    versions = caps["m.room_versions"]
    # Every stable room version of the spec, 1 to 12.
    assert {str(v) for v in range(1, 13)} <= set(versions["available"])
    assert all(versions["available"][str(v)] == "stable" for v in range(1, 13))
    assert set(versions["available"].values()) <= {"stable", "unstable"}
    assert versions["available"]["11"] == "stable" and versions["available"]["12"] == "stable"
    assert versions["default"] in versions["available"]
    assert caps["m.change_password"] == {"enabled": True}
    # Without a token: the endpoint requires authentication.
    anonymous = server.request("GET", "/_matrix/client/v3/capabilities")
    assert anonymous.status_code == 401 and anonymous.json()["errcode"] == "M_MISSING_TOKEN"
