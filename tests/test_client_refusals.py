"""Refused values reach beamline scripts as bluesky-queueserver-api's ``RequestFailedError``.

bluesky-httpserver passes these values on and RE Manager refuses them (HTTP 200, ``success:
false``); scripts catch ``RM.RequestFailedError``. The gateway refuses them before sending, in
the same shape, so the same ``except`` catches them, and the queue is unchanged.
"""

from __future__ import annotations

import asyncio

import pytest
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.http import REManagerAPI
from bluesky_queueserver_api.http.aio import REManagerAPI as AsyncREManagerAPI

from .support import API_KEY

# (client method, arguments, the field its message names)
REFUSED_CALLS = [
    ("item_add", ({"item_type": "plan", "name": "count", "args": [["det1"]]},), {"pos": "middle"}, "pos"),
    ("item_get", (), {"pos": "some"}, "pos"),
    ("item_remove", (), {"pos": "some"}, "pos"),
    ("item_add_batch", ([{"item_type": "plan", "name": "count", "args": [["det1"]]}, {}],), {}, "item_type"),
    ("item_move", (), {"pos": 0, "pos_dest": "x"}, "pos_dest"),
]


def queue_of(rm: REManagerAPI) -> list:
    return [item["item_uid"] for item in rm.queue_get()["items"]]


@pytest.mark.parametrize("name, args, kwargs, field", REFUSED_CALLS)
def test_threads_client_raises_request_failed_with_the_field_named(RM, manager_idle, name, args, kwargs, field):
    RM.item_add(BPlan("count", ["det1"], num=1))
    before = queue_of(RM)
    with pytest.raises(RM.RequestFailedError, match=f"{field}'"):
        getattr(RM, name)(*args, **kwargs)
    assert queue_of(RM) == before


def test_asyncio_client_raises_request_failed_with_the_field_named(gateway_url, manager_idle):
    async def run() -> None:
        rm = AsyncREManagerAPI(http_server_uri=gateway_url)
        rm.set_authorization_key(api_key=API_KEY)
        try:
            await rm.item_add(BPlan("count", ["det1"], num=1))
            before = [item["item_uid"] for item in (await rm.queue_get())["items"]]
            for name, args, kwargs, field in REFUSED_CALLS:
                with pytest.raises(rm.RequestFailedError, match=f"{field}'"):
                    await getattr(rm, name)(*args, **kwargs)
            assert [item["item_uid"] for item in (await rm.queue_get())["items"]] == before
        finally:
            await rm.close()

    asyncio.run(run())


def test_a_script_that_catches_refusals_keeps_going(RM, manager_idle):
    """What beamline scripts do: try, catch RequestFailedError, carry on."""
    failures = []
    for pos in ("middle", "front", 7.5, "back"):
        try:
            RM.item_add(BPlan("count", ["det1"], num=1), pos=pos)
        except RM.RequestFailedError as exc:
            failures.append(str(exc))
    assert len(failures) == 2 and all(text.startswith("Request failed: Failed to add an item: ") for text in failures)
    assert len(queue_of(RM)) == 2
