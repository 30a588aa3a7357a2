"""A minimal Matrix client for the benchmark: one keep-alive HTTP session per user, every call
timed, every non-2xx answer counted per server (the report lists them)."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from urllib.parse import quote

import requests

_txn = itertools.count()


class ServerError(RuntimeError):
    pass


class Client:
    def __init__(self, base_url: str, errors: Counter, token: str | None = None, user_id: str | None = None):
        self.base_url = base_url
        self.errors = errors
        self.token = token
        self.user_id = user_id
        self.http = requests.Session()
        # Passed with every request: a session's own `verify` loses to REQUESTS_CA_BUNDLE.
        self.verify: bool | str = True

    def call(self, method: str, path: str, *, body=None, params=None, timeout: float = 60,
             ok=(200,)) -> tuple[float, dict]:
        """(seconds, JSON body). Raises on anything but `ok`, after counting it."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        start = time.perf_counter()
        r = self.http.request(method, self.base_url + path, json=body, params=params,
                              headers=headers, timeout=timeout, verify=self.verify)
        elapsed = time.perf_counter() - start
        if r.status_code not in ok:
            self.errors[f"{method} {path.split('?')[0][:60]} -> {r.status_code}"] += 1
            raise ServerError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return elapsed, (r.json() if r.content else {})

    # -- accounts ---------------------------------------------------------------------------
    def register(self, username: str, password: str = "bench-password-1") -> "Client":
        body = {"username": username, "password": password, "auth": {"type": "m.login.dummy"}}
        try:
            _, resp = self.call("POST", "/_matrix/client/v3/register", body=body)
        except ServerError:
            # Servers that want a UIA session first: ask for one, then answer the dummy stage.
            _, flows = self.call("POST", "/_matrix/client/v3/register", body={}, ok=(401,))
            body["auth"]["session"] = flows["session"]
            _, resp = self.call("POST", "/_matrix/client/v3/register", body=body)
        return Client(self.base_url, self.errors, resp["access_token"], resp["user_id"])

    # -- rooms ------------------------------------------------------------------------------
    def create_room(self, **extra) -> str:
        body = {"preset": "public_chat", **extra}
        return self.call("POST", "/_matrix/client/v3/createRoom", body=body)[1]["room_id"]

    def join(self, room_id: str) -> None:
        self.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", body={})

    def send(self, room_id: str, text: str) -> tuple[float, str]:
        txn = f"b{next(_txn)}-{uuid.uuid4().hex[:8]}"
        elapsed, resp = self.call(
            "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}",
            body={"msgtype": "m.text", "body": text})
        return elapsed, resp["event_id"]

    def sync(self, since: str | None = None, timeout_ms: int | None = None, **params) -> tuple[float, dict]:
        if since is not None:
            params["since"] = since
        if timeout_ms is not None:
            params["timeout"] = str(timeout_ms)
        wait = (timeout_ms or 0) / 1000 + 60
        return self.call("GET", "/_matrix/client/v3/sync", params=params, timeout=wait)

    def messages(self, room_id: str, from_token: str | None, limit: int) -> tuple[float, dict]:
        params = {"dir": "b", "limit": str(limit)}
        if from_token:
            params["from"] = from_token
        return self.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", params=params)


def timeline_event_ids(sync_body: dict, room_id: str) -> list[str]:
    room = sync_body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e.get("event_id") for e in room.get("timeline", {}).get("events", [])]
