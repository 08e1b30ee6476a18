"""Channels (docs/PROTOCOL.md): subscribe and unsubscribe over the WebSocket by each namespace's
rule and the bounds of [channels], a task's events reaching its channels in seq order, and
POST /api/publish (with its key, never a session token), `taskwire publish` and a stock ZeroMQ
tap of one channel; behind every web server."""
import asyncio
import json
import os
import subprocess
import time

import pytest

from conftest import (WEB_SERVERS, connect, deliverable, run, skip_probes, start_stack, tap,
                      task_events)
from test_fcgi import signed

MAX_CHANNELS = 3  # [channels] max_per_connection of this module's stack
MAX_NAME = 40     # [channels] max_name
NAMESPACES = {"lobby": {"subscribe": "signed_in", "publish": "members"},
              "mine": {"subscribe": "owner", "publish": "nobody"}}


@pytest.fixture(scope="module", params=WEB_SERVERS)
def stack(request):
    """One stack per web server (the publish API under CGI too: a process per request)."""
    return start_stack(request, server=request.param,
                       channel_settings={"max_per_connection": MAX_CHANNELS,
                                         "max_name": MAX_NAME, "max_per_task": 2},
                       namespaces=NAMESPACES)


def token_for(stack, client_id, channels=None):
    """A backend's token for client_id with a channels claim (or none)."""
    now = int(time.time())
    claims = {"sub": client_id, "iat": now, "exp": now + 600}
    if channels is not None:
        claims["channels"] = channels
    return signed(stack, claims)


def client(n):
    return f"{n:032x}"


async def ask(ws, kind, channel):
    """Send a channel request and return its answer (the next message that is not a probe)."""
    await ws.send(json.dumps({"type": kind, "channel": channel}))
    return await skip_probes(ws)


def refusal(reply, reason):
    assert reply["type"] == "refused", reply
    assert reply["reason"] == reason, reply
    assert reply["message"]
    return True


def publish_api(stack, body, key=None, raw=None):
    """(status, body) of POST /api/publish with the publish key (or the given one)."""
    status, _, answer = stack.request("POST", "/api/publish", body, stack.publish_key
                                      if key is None else key, raw=raw)
    return status, answer


def test_subscribe_follows_each_namespace_rule(stack):
    """A page is subscribed where its namespace's rule lets it and told why not elsewhere:
    owner for user:, the channels claim for project: and task:, anyone for a signed_in one."""
    me, other = client(0xa1), client(0xa2)
    token = token_for(stack, me, {"project:42": ["subscribe"], "task:7*": ["subscribe"]})

    async def go():
        ws, _ = await connect(stack, token)
        replies = {}
        for kind, channel in [("subscribe", f"user:{me}"), ("subscribe", f"user:{other}"),
                              ("subscribe", "project:42"), ("subscribe", "project:43"),
                              ("subscribe", "task:7abc"), ("subscribe", "lobby:hall"),
                              ("subscribe", f"mine:{other}"), ("subscribe", "room:1"),
                              ("subscribe", "project:4 2"), ("subscribe", 42),
                              ("subscribe", "project:" + "x" * MAX_NAME)]:
            replies[(kind, json.dumps(channel))] = await ask(ws, kind, channel)
        await ws.close()
        return replies
    replies = run(go())
    get = lambda channel: replies[("subscribe", json.dumps(channel))]
    assert get(f"user:{me}") == {"type": "subscribed", "channel": f"user:{me}"}
    assert refusal(get(f"user:{other}"), "not_allowed")
    assert get("project:42") == {"type": "subscribed", "channel": "project:42"}
    assert refusal(get("project:43"), "not_allowed")
    assert get("task:7abc")["type"] == "subscribed"
    assert get("lobby:hall")["type"] == "subscribed"
    assert refusal(get(f"mine:{other}"), "not_allowed")
    assert refusal(get("room:1"), "unknown_namespace")
    assert refusal(get("project:4 2"), "bad_channel")
    assert refusal(get(42), "bad_channel") and get(42)["channel"] is None
    assert refusal(get("project:" + "x" * MAX_NAME), "too_long")
    assert get("project:43")["request"] == "subscribe" and get("project:43")["channel"] == "project:43"


def test_limits_unsubscribe_and_browser_publish(stack):
    """A page gets at most [channels] max_per_connection channels beyond its own (leaving one
    makes room), cannot leave its own, and a publish from the browser is checked by the
    namespace's rule first (a publish without data where it may publish: bad_data)."""
    me = client(0xb1)
    token = token_for(stack, me, {"project:*": ["subscribe", "publish"]})

    async def go():
        ws, _ = await connect(stack, token)
        got = [await ask(ws, "subscribe", f"project:{n}") for n in range(MAX_CHANNELS + 1)]
        got.append(await ask(ws, "subscribe", f"project:{MAX_CHANNELS - 1}"))  # again: fine
        got.append(await ask(ws, "unsubscribe", "project:0"))
        got.append(await ask(ws, "subscribe", f"project:{MAX_CHANNELS}"))
        got.append(await ask(ws, "unsubscribe", "project:0"))
        got.append(await ask(ws, "unsubscribe", f"user:{me}"))
        got.append(await ask(ws, "publish", "project:1"))
        got.append(await ask(ws, "publish", f"user:{me}"))
        await ws.send(json.dumps({"type": "ping"}))
        got.append(await skip_probes(ws))
        await ws.close()
        return got
    got = run(go())
    assert [g["type"] for g in got[:MAX_CHANNELS]] == ["subscribed"] * MAX_CHANNELS
    assert refusal(got[MAX_CHANNELS], "too_many_channels")
    assert got[MAX_CHANNELS + 1]["type"] == "subscribed"
    assert got[MAX_CHANNELS + 2] == {"type": "unsubscribed", "channel": "project:0"}
    assert got[MAX_CHANNELS + 3]["type"] == "subscribed"
    assert refusal(got[MAX_CHANNELS + 4], "not_subscribed")
    assert refusal(got[MAX_CHANNELS + 5], "own_channel")
    assert refusal(got[MAX_CHANNELS + 6], "bad_data")
    assert refusal(got[MAX_CHANNELS + 7], "publish_not_allowed")
    assert got[-1] == {"type": "pong"}  # the connection stayed


def test_task_channels_reach_a_second_user_in_seq_order(stack):
    """User B in project 42 sees every event of user A's task submitted with that channel, in
    seq order; user C, refused there, gets none of them; A still gets its own."""
    a, b, c = client(0xc1), client(0xc2), client(0xc3)
    token_a = token_for(stack, a, {"project:42": ["subscribe", "publish"]})
    token_b = token_for(stack, b, {"project:42": ["subscribe"]})
    token_c = token_for(stack, c)

    async def go():
        ws_a, _ = await connect(stack, token_a)
        ws_b, _ = await connect(stack, token_b)
        ws_c, _ = await connect(stack, token_c)
        assert (await ask(ws_b, "subscribe", "project:42"))["type"] == "subscribed"
        assert refusal(await ask(ws_c, "subscribe", "project:42"), "not_allowed")
        await deliverable(stack, "project:42", ws_b)
        await deliverable(stack, a, ws_a)
        status, _, task = stack.request("POST", "/api/tasks", {
            "type": "sleep", "params": {"duration_ms": 300, "steps": 3},
            "channels": ["project:42"]}, token_a)
        assert status == 202, task
        assert task["channels"] == ["project:42"]
        seen_b = await task_events(ws_b, task["id"], alone=True)
        seen_a = await task_events(ws_a, task["id"], alone=True)
        with pytest.raises(asyncio.TimeoutError):
            await skip_probes(ws_c, timeout=0.5)
        for ws in (ws_a, ws_b, ws_c):
            await ws.close()
        return task, seen_a, seen_b
    task, seen_a, seen_b = run(go())
    seqs = [e["seq"] for e in seen_b]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert seen_b[0]["event"] == "queued" and seen_b[-1]["event"] == "succeeded"
    assert [e["seq"] for e in seen_a] == seqs
    assert stack.task(token_a, task["id"])["channels"] == ["project:42"]


def test_task_channels_are_checked(stack):
    """A task names only channels its submitter may publish to, at most [channels]
    max_per_task, each once; a wrong one is refused with what is wrong, and no task made."""
    a = client(0xd1)
    token = token_for(stack, a, {"project:1": ["subscribe", "publish"], "project:2": ["publish"],
                                 "project:3": ["subscribe"]})
    cases = [
        (["project:3"], 403, "forbidden"),              # subscribe only
        ([f"user:{a}"], 403, "forbidden"),              # user: publish = nobody
        (["lobby:x"], 202, None),                       # signed_in, members
        (["room:1"], 422, "bad_channel"),
        (["project:1", "project:1"], 400, "bad_request"),
        (["project:1", "project:2", "lobby:x"], 400, "bad_request"),  # over max_per_task
        ("project:1", 400, "bad_request"),
        ([1], 400, "bad_request"),
        (["project:1", "project:2"], 202, None),
    ]
    for channels, status, code in cases:
        got, _, body = stack.request("POST", "/api/tasks", {
            "type": "sleep", "params": {"duration_ms": 0}, "channels": channels}, token)
        assert got == status, (channels, body)
        if code:
            assert body["error"]["code"] == code, (channels, body)
        else:
            assert body["channels"] == channels


def test_publish_api_delivers_to_subscribers(stack):
    """A backend's message (or a list of them) reaches every page subscribed to its channel
    and only those, as {"type":"message","channel":...,"data":...}; a tap subscribed to the
    channel's name with a stock ZeroMQ SUB sees it too."""
    b, c = client(0xe1), client(0xe2)
    token_b = token_for(stack, b, {"project:9": ["subscribe"]})

    async def go():
        ws_b, _ = await connect(stack, token_b)
        ws_c, _ = await connect(stack, token_for(stack, c))
        assert (await ask(ws_b, "subscribe", "project:9"))["type"] == "subscribed"
        sub = tap(stack, "project:9")
        await deliverable(stack, "project:9", ws_b, sub)
        status, answer = publish_api(stack, {"channel": "project:9", "data": {"todo": 1}})
        assert status == 202, answer
        assert answer["published"][0]["channel"] == "project:9" and answer["published"][0]["bytes"] > 0
        first = await skip_probes(ws_b)
        status, answer = publish_api(stack, [{"channel": "project:9", "data": {"todo": 2}},
                                             {"channel": f"user:{c}", "data": {"note": "hi"}}])
        assert status == 202 and len(answer["published"]) == 2, answer
        second = await skip_probes(ws_b)
        to_c = await skip_probes(ws_c)
        frames = []
        while len(frames) < 2:
            got = await asyncio.wait_for(sub.recv_multipart(), 5)
            if b'"probe"' not in got[1]:
                frames.append(got)
        sub.close(0)
        for ws in (ws_b, ws_c):
            await ws.close()
        return first, second, to_c, frames
    first, second, to_c, frames = run(go())
    assert first == {"type": "message", "channel": "project:9", "data": {"todo": 1}}
    assert second["data"] == {"todo": 2}
    assert to_c == {"type": "message", "channel": f"user:{c}", "data": {"note": "hi"}}
    assert all(f[0] == b"project:9" for f in frames)
    assert json.loads(frames[0][1]) == first


def test_publish_api_refuses_without_the_key_and_bad_input(stack):
    """Only the publish key publishes (a session token, a wrong key or none is 401), and a
    malformed message is a clear 4xx that publishes nothing of its request."""
    session = stack.session()
    ok = {"channel": "project:1", "data": {}}
    assert publish_api(stack, ok, key="")[0] == 401
    status, body = publish_api(stack, ok, key="0" * 64)
    assert status == 401 and body["error"]["message"] == "wrong publish key"
    status, body = publish_api(stack, ok, key=session["token"])
    assert status == 401 and "session token" in body["error"]["message"]
    status, body = publish_api(stack, ok, key=stack.admin_key)
    assert status == 401
    cases = [
        ({"channel": "room:1", "data": {}}, 422, "bad_channel"),
        ({"channel": "project:1"}, 400, "bad_request"),
        ({"channel": "project:1", "data": [1]}, 400, "bad_request"),
        ({"data": {}}, 400, "bad_request"),
        ({"channel": "project:1", "data": {}, "extra": 1}, 400, "bad_request"),
        ([], 400, "bad_request"),
        ([ok] * 101, 400, "bad_request"),
        ([ok, {"channel": "nope", "data": {}}], 422, "bad_channel"),
        ({"channel": "project:1", "data": {"x": "y" * 70000}}, 413, "too_large"),
    ]
    for body, status, code in cases:
        got, answer = publish_api(stack, body)
        assert got == status and answer["error"]["code"] == code, (body, got, answer)
    got, answer = publish_api(stack, None, raw=b"not json")
    assert got == 400 and answer["error"]["code"] == "bad_json"


def test_publish_command_and_minted_channels_claim(stack):
    """`taskwire token mint --channel` makes a token whose claim lets its page subscribe, and
    `taskwire publish` reaches that page."""
    cli = os.path.join(stack.build, "taskwire")
    me = client(0xf1)
    minted = subprocess.run([cli, "-c", stack.config_path, "token", "mint", "--client", me,
                             "--channel", "task:room-*=subscribe"],
                            capture_output=True, text=True, timeout=10)
    assert minted.returncode == 0, minted.stderr
    shown = subprocess.run([cli, "-c", stack.config_path, "token", "verify", "--json", "-"],
                           input=minted.stdout, capture_output=True, text=True, timeout=10)
    assert json.loads(shown.stdout)["channels"] == {"task:room-*": ["subscribe"]}, shown
    bad = subprocess.run([cli, "-c", stack.config_path, "token", "mint", "--client", me,
                          "--channel", "task:x=own"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "--channel" in bad.stderr

    async def go():
        ws, _ = await connect(stack, minted.stdout.strip())
        assert (await ask(ws, "subscribe", "task:room-1"))["type"] == "subscribed"
        assert refusal(await ask(ws, "subscribe", "task:other"), "not_allowed")
        await deliverable(stack, "task:room-1", ws)
        done = await asyncio.to_thread(
            subprocess.run, [cli, "-c", stack.config_path, "publish", "task:room-1",
                             '{"typing": true}'], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        got = await skip_probes(ws)
        refused = await asyncio.to_thread(
            subprocess.run, [cli, "-c", stack.config_path, "publish", "room:1", "{}"],
            capture_output=True, text=True, timeout=20)
        await ws.close()
        return done.stdout, got, refused
    out, got, refused = run(go())
    assert "published to task:room-1" in out
    assert got == {"type": "message", "channel": "task:room-1", "data": {"typing": True}}
    assert refused.returncode == 1 and "bad_channel" in refused.stderr
