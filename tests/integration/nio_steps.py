"""Steps that the matrix-nio encryption tests share (test_e2ee.py, test_federation_e2ee.py)."""

from __future__ import annotations


def ok(response, kind, what: str):
    """The response, if nio parsed it as `kind`; otherwise a failure naming `what`."""
    assert isinstance(response, kind), f"{what}: {type(response).__name__} {getattr(response, 'message', '')}"
    return response


async def settle(c) -> None:
    """A sync, then whatever key traffic nio says is due (as its sync_forever would)."""
    from nio import SyncResponse

    ok(await c.sync(timeout=1000, full_state=c.next_batch is None), SyncResponse, f"{c.user_id} sync")
    if c.should_upload_keys:
        await c.keys_upload()
    if c.should_query_keys:
        await c.keys_query()
    if c.should_claim_keys:
        await c.keys_claim(c.get_users_for_key_claiming())
    await c.send_to_device_messages()
