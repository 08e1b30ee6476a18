"""Channel history and recovery by offset (docs/PROTOCOL.md, "History and recovery"): messages of
POST /api/publish to a channel whose namespace keeps history go out with "offset" and "epoch",
GET /api/channels/{name}/history gives back those after a position (or says the position is
lost), across a relay restart and with two worker pools on one PostgreSQL; who may read it,
its bounds and its errors."""
import asyncio
import json
import threading
import urllib.parse

from conftest import WEB_SERVERS, connect, deliverable, run, skip_probes, start_stack
from stack import wait_for
from test_channels import ask, client, publish_api, token_for

import pytest

KEEP = 5       # [namespace project] history_size of this module's stacks
NAMESPACES = {
    "project": {"history_size": KEEP},
    "brief": {"subscribe": "signed_in", "history_size": 3},
    "fleeting": {"subscribe": "signed_in", "history_size": 10, "history_ttl": 5},
    "shared": {"subscribe": "signed_in", "history_size": 100},
    "lobby": {"subscribe": "signed_in"},  # no history
}


@pytest.fixture(scope="module", params=WEB_SERVERS)
def stack(request):
    """One stack per web server (the channel's name in the path through each of them)."""
    return start_stack(request, server=request.param, namespaces=NAMESPACES)


def history(stack, channel, token, quote=False, **query):
    """(status, body) of GET /api/channels/{channel}/history?query with token as the bearer."""
    name = urllib.parse.quote(channel, safe="") if quote else channel
    path = f"/api/channels/{name}/history"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    status, _, body = stack.request("GET", path, token=token)
    return status, body


def publish_all(stack, channel, values):
    """Publish {"n": value} to channel for each value, one request each (in order)."""
    for value in values:
        status, answer = publish_api(stack, {"channel": channel, "data": {"n": value}})
        assert status == 202, answer


def wait_history(stack, channel, token, count, **query):
    """The history answer once it holds count messages (the pool stores them within moments)."""
    def check():
        status, body = history(stack, channel, token, **query)
        assert status == 200, body
        return body if len(body["messages"]) >= count else None
    return wait_for(check, 10, f"{count} messages in {channel}'s history")


def test_live_messages_carry_the_offsets_history_gives_back(stack):
    """A subscriber gets each message with its offset and epoch; the history after offset 2
    is exactly messages 3, 4 and 5 as the subscriber got them, in order; from 0, all five."""
    me = client(0x1a1)
    token = token_for(stack, me, {"project:h1": ["subscribe"]})

    async def go():
        ws, _ = await connect(stack, token)
        assert (await ask(ws, "subscribe", "project:h1"))["type"] == "subscribed"
        await deliverable(stack, "project:h1", ws)
        await asyncio.to_thread(publish_all, stack, "project:h1", range(1, 6))
        live = [await skip_probes(ws) for _ in range(5)]
        await ws.close()
        return live
    live = run(go())
    assert [m["offset"] for m in live] == [1, 2, 3, 4, 5], live
    assert [m["data"]["n"] for m in live] == [1, 2, 3, 4, 5]
    epoch = live[0]["epoch"]
    assert len(epoch) == 16 and all(m["epoch"] == epoch for m in live)
    assert all(m["type"] == "message" and m["channel"] == "project:h1" for m in live)

    status, body = history(stack, "project:h1", token, since=2, epoch=epoch)
    assert status == 200, body
    assert body["recovered"] is True and body["more"] is False
    assert body["channel"] == "project:h1" and body["epoch"] == epoch and body["offset"] == 5
    assert body["messages"] == live[2:]
    status, body = history(stack, "project:h1", token, since=0)
    assert status == 200 and body["messages"] == live and body["recovered"] is True
    # Without since: the position only.  The name may come percent-encoded.
    status, body = history(stack, "project:h1", token, quote=True)
    assert status == 200, body
    assert (body["epoch"], body["offset"], body["messages"]) == (epoch, 5, [])
    # The publish key reads any channel's history.
    status, body = history(stack, "project:h1", stack.publish_key, since=4, epoch=epoch)
    assert status == 200 and body["messages"] == live[4:]


def test_a_lost_position_is_not_recovered(stack):
    """More than history_size messages since a position, or a position of another epoch, is
    answered recovered false with no messages and the position to start from; a position
    still covered is recovered, and a limit pages through what is kept."""
    token = token_for(stack, client(0x1b1))
    publish_all(stack, "brief:room", range(1, 6))
    body = wait_for(lambda: (lambda b: b if b["offset"] == 5 else None)(
        history(stack, "brief:room", token)[1]), 10, "all five stored")
    epoch = body["epoch"]
    status, body = history(stack, "brief:room", token, since=1, epoch=epoch)
    assert status == 200, body
    assert (body["recovered"], body["messages"], body["offset"], body["epoch"]) == \
        (False, [], 5, epoch)
    status, body = history(stack, "brief:room", token, since=2, epoch=epoch)
    assert body["recovered"] is True and [m["offset"] for m in body["messages"]] == [3, 4, 5]
    status, body = history(stack, "brief:room", token, since=0)
    assert [m["data"]["n"] for m in body["messages"]] == [3, 4, 5]
    other = "0123456789abcdef" if epoch != "0123456789abcdef" else "fedcba9876543210"
    status, body = history(stack, "brief:room", token, since=4, epoch=other)
    assert (body["recovered"], body["messages"], body["epoch"]) == (False, [], epoch)
    status, body = history(stack, "brief:room", token, since=9, epoch=epoch)
    assert body["recovered"] is False  # a position this stream never had
    status, body = history(stack, "brief:room", token, since=0, limit=2)
    assert [m["offset"] for m in body["messages"]] == [3, 4] and body["more"] is True
    status, body = history(stack, "brief:room", token, since=4, epoch=epoch, limit=2)
    assert [m["offset"] for m in body["messages"]] == [5] and body["more"] is False
    # A channel never published to: no stream yet.
    status, body = history(stack, "brief:empty", token, since=0)
    assert (status, body["epoch"], body["offset"], body["recovered"]) == (200, "", 0, True)


def test_who_may_read_and_what_is_refused(stack):
    """The namespace's subscribe rule decides who reads a channel's history (403 otherwise),
    a namespace without history says so (409), and bad names and queries are 422 and 400."""
    me = client(0x1c1)
    allowed = token_for(stack, me, {"project:h3": ["subscribe"]})
    publish_only = token_for(stack, me, {"project:h3": ["publish"]})
    assert history(stack, "project:h3", None)[0] == 401
    assert history(stack, "project:h3", "not-a-token")[0] == 401
    assert history(stack, "project:h3", "0" * 64)[0] == 401  # not the publish key
    status, body = history(stack, "project:h3", publish_only)
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = history(stack, "project:h4", allowed)
    assert status == 403, body
    status, body = history(stack, "lobby:hall", allowed)
    assert status == 409 and body["error"]["code"] == "no_history", body
    for channel in ("room:1", "project:a b", "project", "project:" + "x" * 70):
        status, body = history(stack, channel, allowed, quote=True)
        assert status == 422 and body["error"]["code"] == "bad_channel", (channel, body)
    epoch = "0123456789abcdef"
    for query in ({"since": -1}, {"since": "x"}, {"since": 3}, {"since": 3, "epoch": "XYZ"},
                  {"epoch": epoch}, {"since": 0, "limit": 0}, {"since": 0, "limit": KEEP + 1},
                  {"since": "1e3", "epoch": epoch}):
        status, body = history(stack, "project:h3", allowed, **query)
        assert status == 400 and body["error"]["code"] == "bad_request", (query, body)
    status, _, body = stack.request("POST", "/api/channels/project:h3/history", token=allowed)
    assert status == 405, body
    status, body = publish_api(stack, {"channel": "project:h3", "data": {"x": "y" * 65440}})
    assert status == 413, body  # no room left for the position


def test_recovery_across_a_relay_restart(request):
    """A page's position, the relay killed and started again while messages are published:
    the history since the position is exactly the messages it missed, and the next live one
    follows them."""
    stack = start_stack(request, namespaces=NAMESPACES)
    token = token_for(stack, client(0x1d1), {"project:r": ["subscribe"]})

    async def first_part():
        ws, _ = await connect(stack, token)
        assert (await ask(ws, "subscribe", "project:r"))["type"] == "subscribed"
        await deliverable(stack, "project:r", ws)
        await asyncio.to_thread(publish_all, stack, "project:r", [1, 2])
        got = [await skip_probes(ws) for _ in range(2)]
        await ws.close()  # the page goes away
        return got
    got = run(first_part())
    position = got[-1]
    stack.kill_relay()
    publish_all(stack, "project:r", [3, 4, 5])
    stack.start_relay()
    wait_history(stack, "project:r", token, 3, since=position["offset"], epoch=position["epoch"])

    async def second_part():
        ws, _ = await connect(stack, token)
        assert (await ask(ws, "subscribe", "project:r"))["type"] == "subscribed"
        await deliverable(stack, "project:r", ws)
        status, body = await asyncio.to_thread(history, stack, "project:r", token,
                                               since=position["offset"], epoch=position["epoch"])
        await asyncio.to_thread(publish_all, stack, "project:r", [6])
        live = await skip_probes(ws)
        await ws.close()
        return status, body, live
    status, body, live = run(second_part())
    assert status == 200 and body["recovered"] is True, body
    assert [(m["offset"], m["data"]["n"]) for m in body["messages"]] == [(3, 3), (4, 4), (5, 5)]
    assert all(m["epoch"] == position["epoch"] for m in body["messages"])
    assert (live["offset"], live["epoch"], live["data"]) == (6, position["epoch"], {"n": 6})


def test_messages_expire_after_the_namespace_ttl(request):
    """A message is kept history_ttl seconds: after that the history no longer has it, and a
    position before it is lost, one at the end still current."""
    stack = start_stack(request, namespaces=NAMESPACES)
    token = token_for(stack, client(0x1e1))
    publish_all(stack, "fleeting:x", [1, 2])
    body = wait_history(stack, "fleeting:x", token, 2, since=0)
    epoch = body["epoch"]
    wait_for(lambda: history(stack, "fleeting:x", token, since=0)[1]["messages"] == [], 15,
             "the messages to expire")
    status, body = history(stack, "fleeting:x", token, since=1, epoch=epoch)
    assert (status, body["recovered"], body["offset"]) == (200, False, 2)
    status, body = history(stack, "fleeting:x", token, since=2, epoch=epoch)
    assert (body["recovered"], body["messages"]) == (True, [])


def test_two_pools_on_one_postgresql_share_one_stream(request):
    """Two hosts' worker pools publishing to one channel at once give every message its own
    offset, without a gap, and each host's messages keep their order."""
    first = start_stack(request, store="postgresql", namespaces=NAMESPACES)
    with open(first.secret_path, "rb") as f:
        secret = f.read()
    second = start_stack(request, store_url=first.store_url, secret=secret,
                         namespaces=NAMESPACES)
    per_host = 20

    def host(stack, name):
        for n in range(per_host):
            status, answer = publish_api(stack, {"channel": "shared:both",
                                                 "data": {"host": name, "n": n}})
            assert status == 202, answer
    threads = [threading.Thread(target=host, args=(s, name))
               for s, name in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    token = token_for(first, client(0x1f1))
    body = wait_for(lambda: (lambda b: b if b["offset"] == 2 * per_host else None)(
        history(first, "shared:both", token)[1]), 15, "every message stored")
    status, page = history(second, "shared:both", token, since=0)
    assert status == 200 and page["recovered"] is True, page
    assert [m["offset"] for m in page["messages"]] == list(range(1, 2 * per_host + 1))
    assert page["epoch"] == body["epoch"]
    assert sorted((m["data"]["host"], m["data"]["n"]) for m in page["messages"]) == \
        sorted((h, n) for h in "ab" for n in range(per_host))
    for name in ("a", "b"):
        mine = [m["data"]["n"] for m in page["messages"] if m["data"]["host"] == name]
        assert mine == sorted(mine), (name, page["messages"])


def test_history_command(stack):
    """`taskwire history` prints a channel's position and its kept messages, pages through
    them with --limit, and exits 1 for a lost position or a namespace without history."""
    import os
    import subprocess
    publish_all(stack, "brief:cli", range(1, 6))
    token = token_for(stack, client(0x1a2))
    body = wait_for(lambda: (lambda b: b if b["offset"] == 5 else None)(
        history(stack, "brief:cli", token)[1]), 10, "all five stored")
    epoch = body["epoch"]
    cli = os.path.join(stack.build, "taskwire")

    def command(*args):
        return subprocess.run([cli, "-c", stack.config_path, "history", *args],
                              capture_output=True, text=True, timeout=20)
    done = command("brief:cli", "--limit", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"brief:cli epoch {epoch} offset 5", '3 {"n":3}',
                                        '4 {"n":4}', '5 {"n":5}'], done.stdout
    done = command("brief:cli", "--since", "4", "--epoch", epoch, "--json")
    assert done.returncode == 0, done.stderr
    assert [m["offset"] for m in json.loads(done.stdout)["messages"]] == [5]
    lost = command("brief:cli", "--since", "1", "--epoch", epoch)
    assert lost.returncode == 1 and "not recovered" in lost.stdout, lost
    refused = command("lobby:x")
    assert refused.returncode == 1 and "no_history" in refused.stderr, refused
    usage = command("brief:cli", "--since", "2")
    assert usage.returncode == 2 and "--epoch" in usage.stderr, usage
