// A small RESP3 connection for the browser tests: commands in, replies out in
// order, push frames (">") kept apart. Enough for a service worker and a
// caller (SVC.SERVE, CALL, SVC.REPLY); not a general client.

import net from "node:net";

// Parses one value at `pos`; returns [value, next] or null while incomplete.
// Errors come back as RespError; pushes as arrays with .push = true.
export class RespError extends Error {}

function parse(buf, pos) {
  const eol = buf.indexOf("\r\n", pos);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString("utf8", pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case "+": return [line, next];
    case "-": case "!": return [new RespError(line), next];
    case ":": return [Number(line), next];
    case ",": return [Number(line), next];
    case "#": return [line === "t", next];
    case "_": return [null, next];
    case "$": case "=": {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.toString("utf8", next, next + n), next + n + 2];
    }
    case "*": case "~": case ">": case "%": case "|": {
      const n = Number(line);
      if (n < 0) return [null, next];
      const count = type === "%" || type === "|" ? 2 * n : n;
      const items = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const r = parse(buf, at);
        if (r === null) return null;
        items.push(r[0]);
        at = r[1];
      }
      if (type === "|") return parse(buf, at);  // an attribute: the value follows
      if (type === "%") {
        const map = {};
        for (let i = 0; i < items.length; i += 2) map[items[i]] = items[i + 1];
        return [map, at];
      }
      if (type === ">") items.push = true;
      return [items, at];
    }
    default:
      throw new Error(`unexpected RESP type ${JSON.stringify(type)}`);
  }
}

export class Resp {
  static connect(port, host = "127.0.0.1") {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ port, host }, () => resolve(new Resp(socket)));
      socket.once("error", reject);
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.waiters = [];       // {resolve, reject} per command sent, in order
    this.pushes = [];
    this.pushWaiters = [];
    socket.on("data", (chunk) => this.receive(chunk));
    socket.on("close", () => {
      for (const w of this.waiters.splice(0)) w.reject(new Error("connection closed"));
    });
  }

  receive(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      const r = parse(this.buf, 0);
      if (r === null) return;
      this.buf = this.buf.subarray(r[1]);
      const value = r[0];
      if (Array.isArray(value) && value.push) {
        const w = this.pushWaiters.shift();
        if (w) w(value); else this.pushes.push(value);
      } else {
        const w = this.waiters.shift();
        if (w) w.resolve(value);
      }
    }
  }

  // Sends a command; resolves with its reply (an error reply as a RespError value).
  command(...args) {
    let out = `*${args.length}\r\n`;
    for (const a of args) {
      const s = String(a);
      out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.socket.write(out);
    });
  }

  // The next push frame (e.g. ["svc.request", id, service, payload]).
  nextPush() {
    if (this.pushes.length) return Promise.resolve(this.pushes.shift());
    return new Promise((resolve) => this.pushWaiters.push(resolve));
  }

  close() {
    this.socket.destroy();
  }
}
