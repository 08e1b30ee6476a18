"""The relay under RFC 6455's rules for what a client sends: raw frames, at the relay directly and
through each web server.  Legal input (fragments, control frames between them, UTF-8 split
across fragments, pings) is answered; each illegal frame fails its connection with the close code
RFC 6455 names, the TCP connection then ends, and another page's connection loses nothing."""
import base64
import json
import os
import socket
import struct
import time

import pytest

from conftest import auth_message, connect, deliverable, publisher, run, skip_probes
from stack import CLIENT_MESSAGE_MAX

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
END_WITHIN = 2.0       # seconds for the TCP connection to end after a failing close
CLOSE_ACK_WAIT = 5.0   # the relay waits this long for the reply to a close it started


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One client frame; length forces the encoding of the payload length (126 or 127)."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if length == 127 or n > 0xFFFF:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    elif length == 126 or n >= 126:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | n])
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code=None, reason=b""):
    return frame(CLOSE, (struct.pack("!H", code) if code is not None else b"") + reason)


class Raw:
    """A WebSocket client over a plain socket: the handshake, then frames byte for byte."""

    def __init__(self, port, token, connected=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more(5)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.split(b"\r\n")[0].split()[1] == b"101", head
        self.send(frame(TEXT, auth_message(token)))
        if connected:
            opcode, payload = self.read()
            assert opcode == TEXT and json.loads(payload)["type"] == "connected", payload

    def _more(self, timeout):
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._more(max(0.01, deadline - time.monotonic()))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, timeout=5):
        """The next frame from the relay: (opcode, payload)."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._take(2, deadline)
        assert not b1 & 0x80, "a server frame must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8, deadline))[0]
        return b0 & 0x0F, self._take(n, deadline)

    def send(self, *frames):
        self.sock.sendall(b"".join(frames))

    def closed_with(self, timeout=5):
        """Read to the relay's close frame: its (code, reason)."""
        while True:
            opcode, payload = self.read(timeout)
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode()

    def ends_within(self, seconds):
        """Seconds until the relay's side of the TCP connection ended (bytes after the close
        are dropped); fails after seconds."""
        start = time.monotonic()
        deadline = start + seconds
        try:
            while True:
                self.buf = b""
                self._more(max(0.01, deadline - time.monotonic()))
        except (EOFError, ConnectionResetError):
            return time.monotonic() - start
        except socket.timeout:
            raise AssertionError(f"the connection still open {seconds} s after the close")

    def close(self):
        self.sock.close()


def port_of(stack, direct):
    return stack.relay_port if direct else stack.http_port


DIRECT = pytest.mark.parametrize("direct", [False, True], ids=["through the web server", "direct"])


@pytest.fixture(scope="module")
def bystander(stack):
    """Another page's connection, open through every case: (its client id, a check that it
    still answers a ping and still receives its messages)."""
    session = stack.session()
    raw = Raw(stack.http_port, session["token"])

    def still_fine():
        raw.send(frame(TEXT, '{"type":"ping"}'))
        while True:
            opcode, payload = raw.read()
            if opcode == TEXT and json.loads(payload).get("type") == "pong":
                break

        async def message():
            pub = publisher(stack)
            try:
                ws, _ = await connect(stack, session["token"], True)
                await deliverable(stack, session["client_id"], ws, pub=pub)
                await pub.send_multipart([session["client_id"].encode(), b'{"type":"after"}'])
                assert (await skip_probes(ws))["type"] == "after"
                await ws.close()
            finally:
                pub.close(0)
        run(message())
        # The raw bystander saw the probes and the message too: it stays readable.
        raw.buf = b""
        raw.sock.settimeout(0.2)
        try:
            while raw.sock.recv(65536):
                pass
        except socket.timeout:
            pass
    yield still_fine
    raw.close()


def answers(raw, opcode=TEXT):
    """The relay's next frame of this opcode (skipping others): its payload."""
    while True:
        got, payload = raw.read()
        if got == opcode:
            return payload


LEGAL = {
    # The probe: a 15-byte message in two fragments.
    "two fragments": [frame(TEXT, '{"type":', fin=False), frame(CONT, '"ping"}')],
    "three fragments, one empty": [frame(TEXT, '{"typ', fin=False), frame(CONT, "", fin=False),
                                   frame(CONT, 'e":"ping"}')],
    "a ping between fragments": [frame(TEXT, '{"type":', fin=False), frame(PING, "between"),
                                 frame(CONT, '"ping"}')],
    "UTF-8 split across fragments": [frame(TEXT, '{"type":"ping","x":"\xc3'.encode("latin-1"),
                                           fin=False),
                                     frame(CONT, '\xa9"}'.encode("latin-1"))],
    "an unasked pong first": [frame(PONG, "hello"), frame(TEXT, '{"type":"ping"}')],
    "a message of 512 bytes": [frame(TEXT, ('{"type":"ping","pad":"' + "x" * 512)[:510] + '"}')],
}


@DIRECT
@pytest.mark.parametrize("case", LEGAL)
def test_legal_frames_are_answered(stack, bystander, direct, case):
    """Fragmented messages (within the size bound), control frames between fragments and UTF-8
    split across fragments are whole messages to the relay: the page gets its pong."""
    raw = Raw(port_of(stack, direct), stack.session()["token"])
    try:
        raw.send(*LEGAL[case])
        if case == "a ping between fragments":
            assert answers(raw, PONG) == b"between"
        assert json.loads(answers(raw)) == {"type": "pong"}
        raw.send(frame(TEXT, '{"type":"ping"}'))
        assert json.loads(answers(raw)) == {"type": "pong"}
    finally:
        raw.close()
    bystander()


@DIRECT
def test_a_ping_frame_gets_its_payload_back(stack, direct):
    """A client's ping is answered by a pong with the same payload (RFC 6455 5.5.3)."""
    raw = Raw(port_of(stack, direct), stack.session()["token"])
    try:
        raw.send(frame(PING, b"\x00\xffpayload"))
        assert answers(raw, PONG) == b"\x00\xffpayload"
    finally:
        raw.close()


ILLEGAL = {
    "orphan continuation": ([frame(CONT, '{"type":"ping"}')], 1002),
    "RSV1 without an extension": ([frame(TEXT, '{"type":"ping"}', rsv=4)], 1002),
    "RSV2": ([frame(TEXT, '{"type":"ping"}', rsv=2)], 1002),
    "RSV3 on a ping": ([frame(PING, "x", rsv=1)], 1002),
    "opcode 3": ([frame(0x3, "x")], 1002),
    "opcode 0xB": ([frame(0xB, "x")], 1002),
    "a ping of 126 bytes": ([frame(PING, "x" * 126)], 1002),
    "a fragmented ping": ([frame(PING, "x", fin=False), frame(CONT, "y")], 1002),
    "an unmasked frame": ([frame(TEXT, '{"type":"ping"}', mask=False)], 1002),
    "a new message inside a fragmented one": ([frame(TEXT, '{"type":', fin=False),
                                               frame(TEXT, '"ping"}')], 1002),
    "a length not in its shortest form": ([frame(TEXT, '{"type":"ping"}', length=126)], 1002),
    "invalid UTF-8": ([frame(TEXT, b'{"type":"\xff"}')], 1007),
    "invalid UTF-8 across fragments": ([frame(TEXT, b'{"type":"\xe2\x82', fin=False),
                                        frame(CONT, b'("}')], 1007),
    "UTF-8 cut at the message's end": ([frame(TEXT, b'{"type":"ping"}\xe2\x82')], 1007),
    "a binary message": ([frame(BINARY, b'{"type":"ping"}')], 1003),
    "a byte over the bound in two fragments": ([frame(TEXT, "x" * 600, fin=False),
                                                frame(CONT, "y" * (CLIENT_MESSAGE_MAX - 599))],
                                               1009),
    "a close of one byte": ([frame(CLOSE, b"\x03")], 1002),
    "a close reason not UTF-8": ([close_frame(1000, b"\xff\xfe")], 1007),
}
for bad_code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000):
    ILLEGAL[f"a close with code {bad_code}"] = ([close_frame(bad_code)], 1002)


@DIRECT
@pytest.mark.parametrize("case", ILLEGAL)
def test_illegal_frames_fail_the_connection(stack, bystander, direct, case):
    """Each frame RFC 6455 forbids fails its connection with the code the RFC names; the TCP
    connection ends at once after the close; another page's connection goes on."""
    frames, code = ILLEGAL[case]
    raw = Raw(port_of(stack, direct), stack.session()["token"])
    try:
        raw.send(*frames)
        got, _ = raw.closed_with()
        assert got == code
        raw.ends_within(END_WITHIN)
    finally:
        raw.close()
    bystander()


@DIRECT
@pytest.mark.parametrize("code", [None, 1000, 1001, 4000])
def test_a_close_from_the_page_is_answered_and_ends(stack, direct, code):
    """A page that closes gets the close back with its code (1000 when it gave none) and the
    connection ends at once, not after a timeout."""
    raw = Raw(port_of(stack, direct), stack.session()["token"])
    try:
        raw.send(close_frame(code, b"bye" if code else b""))
        assert raw.closed_with() == (code or 1000, "")
        raw.ends_within(END_WITHIN)
    finally:
        raw.close()


@DIRECT
def test_a_close_the_page_never_answers_ends_in_bounded_time(stack, direct):
    """The relay closes (a bad token: 4001) and the page never replies: the TCP connection
    ends CLOSE_ACK_WAIT seconds later, not never."""
    raw = Raw(port_of(stack, direct), "a.b.c", connected=False)
    try:
        assert raw.closed_with() == (4001, "unauthorized")
        took = raw.ends_within(CLOSE_ACK_WAIT + 3)
        assert took >= CLOSE_ACK_WAIT - 1, f"ended after {took:.1f} s, before the wait"
    finally:
        raw.close()


@DIRECT
def test_the_reply_to_the_relays_close_ends_it_at_once(stack, direct):
    """The relay closes (4001) and the page replies: the connection ends at once."""
    raw = Raw(port_of(stack, direct), "a.b.c", connected=False)
    try:
        assert raw.closed_with() == (4001, "unauthorized")
        raw.send(close_frame(4001))
        raw.ends_within(END_WITHIN)
    finally:
        raw.close()
