"""Identity from the host application (docs/AUTH.md): with [auth] trust_remote_user the web
server's login names the client, so a user's tasks follow them from device to device;
[auth] anonymous = false turns the random, anonymous sessions off."""
import base64
import json
import os

import pytest

from conftest import connect, run, start_stack
from test_cgi import cgi
from test_cli import taskwire

USERS = {"alice": "wonderland", "bob.smith@example.org": "builder"}


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module", params=["lighttpd", "apache"])
def login_stack(request):
    """A stack whose web server asks for a password on /api/session and whose handler trusts
    the user it names."""
    return start_stack(request, server=request.param, basic_auth=USERS,
                       auth_settings={"trust_remote_user": "true"})


def test_same_user_on_two_devices_sees_the_same_tasks(login_stack):
    """A user who logs in on a laptop and then on a phone sees on the phone the task started on
    the laptop; another user sees none of it."""
    status, _, laptop = login_stack.request("POST", "/api/session", headers=basic("alice", USERS["alice"]))
    assert status == 201, laptop
    status, _, phone = login_stack.request("POST", "/api/session", headers=basic("alice", USERS["alice"]))
    assert status == 201, phone
    assert laptop["client_id"] == phone["client_id"]
    task = login_stack.submit(laptop["token"], "sleep", {"duration_ms": 50, "steps": 1})
    listed = login_stack.request("GET", "/api/tasks", token=phone["token"])[2]["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
    bob = "bob.smith@example.org"
    status, _, other = login_stack.request("POST", "/api/session", headers=basic(bob, USERS[bob]))
    assert status == 201 and other["client_id"] != laptop["client_id"]
    assert login_stack.request("GET", "/api/tasks", token=other["token"])[2]["tasks"] == []
    # The user name is in no log of the handler's (the client id stands for it).
    assert "alice" not in login_stack.logs().replace("users.", "")


def test_no_or_wrong_password_is_401(login_stack):
    """Without a login there is no session: the web server (wrong password) or the handler
    (no user at all) answers 401, and no token is made."""
    status, _, body = login_stack.request("POST", "/api/session", headers=basic("alice", "guess"))
    assert status == 401 and not (body or {}).get("token")
    assert login_stack.request("POST", "/api/session")[0] == 401


def test_handler_without_remote_user_is_401(request):
    """trust_remote_user on a server that asks for no password: the handler refuses rather
    than making an anonymous session."""
    stack = start_stack(request, auth_settings={"trust_remote_user": "true"})
    status, _, body = stack.request("POST", "/api/session")
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_anonymous_off_is_401(request):
    """[auth] anonymous = false: a page cannot get a session of its own; tokens come only from
    the app's backend."""
    stack = start_stack(request, auth_settings={"anonymous": "false"})
    status, _, body = stack.request("POST", "/api/session")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert "anonymous sessions are off" in body["error"]["message"]


@pytest.mark.parametrize("user", ["bad user", "x" * 65, "caf\u00e9", "a\"b", "a/b"])
def test_bad_remote_user_is_400(request, user):
    """A user name the handler cannot take as an identity is a clear 400, never a crash or a
    session named after part of it."""
    stack = start_stack(request, auth_settings={"trust_remote_user": "true"})
    status, _, body, _ = cgi(stack, "POST", "/api/session", extra_env={"REMOTE_USER": user})
    assert status == 400 and body["error"]["code"] == "bad_request", body
    status, _, good, _ = cgi(stack, "POST", "/api/session", extra_env={"REMOTE_USER": "x" * 64})
    assert status == 201 and len(good["client_id"]) == 32


def auth_doc_python():
    """The Python minting example of docs/AUTH.md, run as it stands."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "AUTH.md")
    text = open(path).read()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    names = {}
    exec(compile(code, "docs/AUTH.md", "exec"), names)
    return names


def test_backend_minted_token_works_on_rest_and_relay(request):
    """An app whose backend signs tokens as docs/AUTH.md shows gets them taken by the REST API
    and the relay, under the same client id the web server's login would give the user."""
    stack = start_stack(request, auth_settings={"trust_remote_user": "true"})
    mint = auth_doc_python()
    secret = open(stack.secret_path, "rb").read()
    client_id = mint["taskwire_client_id"](secret, "alice")
    token = mint["taskwire_token"](secret, client_id)
    status, _, session, _ = cgi(stack, "POST", "/api/session", extra_env={"REMOTE_USER": "alice"})
    assert status == 201 and session["client_id"] == client_id
    task = stack.submit(token, "sleep", {"duration_ms": 50, "steps": 1})
    listed = stack.request("GET", "/api/tasks", token=session["token"])[2]["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]

    async def go():
        ws, hello = await connect(stack, token)
        await ws.close()
        return hello
    assert run(go())["client_id"] == client_id


def test_cli_mints_for_a_user(request):
    """An operator can hand a user a token for the identity their login gives them (`taskwire
    token mint --user`), and a name that is no identity is a usage error."""
    stack = start_stack(request, auth_settings={"trust_remote_user": "true"})
    status, _, session, _ = cgi(stack, "POST", "/api/session", extra_env={"REMOTE_USER": "alice"})
    status, out, err = taskwire(stack, "token", "mint", "--user", "alice", "--json")
    assert status == 0, err
    assert json.loads(out)["client_id"] == session["client_id"]
    status, out, err = taskwire(stack, "token", "verify", json.loads(out)["token"])
    assert status == 0 and session["client_id"] in out
    status, _, err = taskwire(stack, "token", "mint", "--user", "bad user")
    assert status == 2 and "--user must be" in err
    status, _, err = taskwire(stack, "token", "mint", "--user", "alice", "--client", "0" * 32)
    assert status == 2 and "either --client" in err
