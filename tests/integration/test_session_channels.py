"""[auth] session_channels (docs/AUTH.md): every token POST /api/session issues carries the
configured channels claim, which the relay and the handler honour like a backend's; without the
key a session has none."""
import base64
import json

import pytest

from conftest import connect, run, start_stack
from test_channels import ask

GRANTS = "project:demo=subscribe,publish task:*=subscribe"


def claims_of(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture(scope="module")
def stack(request):
    return start_stack(request, auth_settings={"session_channels": GRANTS})


def test_every_session_carries_the_claim(stack):
    """A board page's anonymous session may join its project and any task room, publish a task
    to the project, and nothing else; the session's answer says what it was granted."""
    session = stack.session()
    granted = {"project:demo": ["subscribe", "publish"], "task:*": ["subscribe"]}
    assert session["channels"] == granted
    assert claims_of(session["token"])["channels"] == granted
    token = session["token"]

    async def go():
        ws, _ = await connect(stack, token)
        replies = [await ask(ws, "subscribe", channel)
                   for channel in ("project:demo", "task:0123abcd", "project:other")]
        await ws.close()
        return replies
    demo, room, other = run(go())
    assert demo == {"type": "subscribed", "channel": "project:demo"}
    assert room == {"type": "subscribed", "channel": "task:0123abcd"}
    assert other["type"] == "refused" and other["reason"] == "not_allowed", other
    for channels, status in ((["project:demo"], 202), (["project:other"], 403),
                             (["task:0123abcd"], 403)):  # task:* grants subscribe only
        got, _, body = stack.request("POST", "/api/tasks", {
            "type": "sleep", "params": {"duration_ms": 0}, "channels": channels}, token)
        assert got == status, (channels, body)
    # Two sessions: two client ids, the same claim.
    second = stack.session()
    assert second["client_id"] != session["client_id"]
    assert second["channels"] == granted


def test_without_the_key_sessions_have_no_claim(request):
    """The default: a session's token and answer carry no channels claim."""
    plain = start_stack(request)
    session = plain.session()
    assert "channels" not in session
    assert "channels" not in claims_of(session["token"])


def test_a_claim_too_long_for_a_token_is_refused_at_start(stack, tmp_path):
    """An operator who lists more than a token holds hears it from -n, not from a 500 at the
    first session."""
    import subprocess
    items = [f"project:a-rather-long-project-name-{n:02d}=subscribe,publish" for n in range(11)]
    config = tmp_path / "taskwire.conf"
    config.write_text("[auth]\nsession_channels =\n" + "".join(f"  {item}\n" for item in items))
    result = subprocess.run([f"{stack.build}/taskwire.fcgi", "-n", "-c", str(config)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert "session_channels" in result.stderr and "511" in result.stderr, result.stderr
