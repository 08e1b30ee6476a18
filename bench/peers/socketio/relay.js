// relay.js: the Socket.IO peer for taskwire's benchmarks.
//
// The same job as taskwire-relay, done the idiomatic Socket.IO way: a client connects to
// /socket.io/?EIO=4&transport=websocket&cid=CLIENT_ID and joins the room CLIENT_ID; a publisher
// writes "CLIENT_ID PAYLOAD\n" lines to a plain TCP input, and each line becomes
// io.to(CLIENT_ID).emit("msg", PAYLOAD) (the payload is passed on as a string, unparsed).
//
// usage: node relay.js --port N --pub-port N [--host 127.0.0.1]
"use strict";

const http = require("http");
const net = require("net");
const { Server } = require("socket.io");

function option(name, fallback) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "0"));
const pubPort = Number(option("pub-port", "0"));
if (!port || !pubPort) {
  console.error("usage: node relay.js --port N --pub-port N [--host ADDR]");
  process.exit(2);
}

const httpServer = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  res.writeHead(404);
  res.end();
});
httpServer.maxConnections = 1000000;

const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 65536,
});

io.on("connection", (socket) => {
  const cid = socket.handshake.query.cid;
  if (typeof cid === "string" && /^[0-9a-f]{32}$/.test(cid)) socket.join(cid);
  else socket.disconnect(true);
});

// Publish input: one "CLIENT_ID PAYLOAD" per line.
const input = net.createServer((conn) => {
  let pending = "";
  conn.setEncoding("utf8");
  conn.on("data", (chunk) => {
    pending += chunk;
    let start = 0;
    for (;;) {
      const nl = pending.indexOf("\n", start);
      if (nl < 0) break;
      const sp = pending.indexOf(" ", start);
      if (sp > start && sp < nl) io.to(pending.slice(start, sp)).emit("msg", pending.slice(sp + 1, nl));
      start = nl + 1;
    }
    pending = pending.slice(start);
  });
  conn.on("error", () => {});
});

httpServer.listen(port, host, () => {
  input.listen(pubPort, host, () => console.error(`socket.io relay on ${host}:${port}, input ${pubPort}`));
});

function stop() {
  input.close();
  io.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
