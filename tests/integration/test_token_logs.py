"""No log of the stack holds a session token (docs/DEPLOY.md): whoever reads a log could act
as the client.  The web servers' logs count as much as the programs' own.  The token travels in
the WebSocket's first message, never in its URL (docs/AUTH.md), so not even a web server's error
log about a failed /ws request has it."""
import asyncio
import glob
import os

import pytest
import websockets

from conftest import WEB_SERVERS, connect, open_ws, run, start_stack


def logs_with(stack, token):
    """The stack's log files that hold token."""
    found = []
    for path in glob.glob(os.path.join(stack.tmp, "**", "*log*"), recursive=True):
        if os.path.isfile(path) and token.encode() in open(path, "rb").read():
            found.append(os.path.basename(path))
    return found


@pytest.mark.parametrize("server", WEB_SERVERS)
def test_no_token_in_any_log_in_a_normal_run(request, server):
    """A page's whole life (session, task, WebSocket, refused token) leaves its token in no log."""
    stack = start_stack(request, server=server)
    session = stack.session()
    task = stack.submit(session["token"], "sleep", {"duration_ms": 50, "steps": 1})
    stack.wait_final(session["token"], task["id"])

    async def go():
        ws, _ = await connect(stack, session["token"])
        await ws.close()
        # A refused token (the real one with a byte more) is not logged either.
        refused = await open_ws(stack, session["token"] + "x")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(refused.recv(), 5)
        assert closed.value.code == 4001
    run(go())
    stack.stop_server()
    stack.stop_relay()
    assert logs_with(stack, session["token"]) == []


@pytest.mark.parametrize("server", WEB_SERVERS)
def test_no_token_in_any_log_with_the_relay_down(request, server):
    """A page that cannot reach the relay leaves its token in no log of the web server's (the
    error log of a failed /ws request names the URL, which holds no token)."""
    stack = start_stack(request, server=server)
    session = stack.session()
    stack.stop_relay()

    async def go():
        with pytest.raises((websockets.InvalidStatusCode, websockets.InvalidHandshake, OSError)):
            ws = await open_ws(stack, session["token"])
            await ws.close()
    run(go())
    stack.stop_server()
    assert logs_with(stack, session["token"]) == []
