"""origin.py: the dummy origin behind Pushpin for taskwire's relay benchmark.

Pushpin proxies each WebSocket as WebSocket-over-HTTP (route option over_http): on OPEN this
origin accepts the connection and answers with a GRIP control message that subscribes it to
the channel named by the last path segment (/ws/CLIENT_ID), so every client id is a channel.
Anything else the client sends is acknowledged with an empty event list.

usage: /usr/bin/python3 origin.py PORT
"""
import http.server
import json
import socketserver
import sys


def event(kind, content=None):
    if content is None:
        return kind.encode() + b"\r\n"
    data = content.encode()
    return b"%s %x\r\n%s\r\n" % (kind.encode(), len(data), data)


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        out = b""
        if body.startswith(b"OPEN"):
            channel = self.path.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
            control = json.dumps({"type": "subscribe", "channel": channel}, separators=(",", ":"))
            out = event("OPEN") + event("TEXT", "c:" + control)
        self.send_response(200)
        self.send_header("Content-Type", "application/websocket-events")
        self.send_header("Sec-WebSocket-Extensions", "grip")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Origin).serve_forever()
