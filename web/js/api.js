// The JSON API (docs/http.md) and the room WebSocket, as the dashboard uses them.

import { askPassword, authHeader, wsProtocols } from "./auth.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

// A read that has not answered in this long fails (a stopped or cut-off node
// would otherwise leave a page waiting forever, showing old figures as live).
// Writes are not timed out here: their outcome would be unknown.
const READ_TIMEOUT_MS = 3000;

// A request to the JSON API. On 401 (the server has a password) it asks for
// the password once and retries.
export async function api(method, path, body) {
  for (;;) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const auth = authHeader();
    if (auth !== null) init.headers.Authorization = auth;
    let res;
    if (method === "GET") {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), READ_TIMEOUT_MS);
      init.signal = abort.signal;
      try {
        res = await fetch(path, init);
      } catch (e) {
        if (abort.signal.aborted) throw new ApiError(0, "TIMEOUT", "the server did not answer");
        throw e;
      } finally {
        clearTimeout(timer);
      }
    } else {
      res = await fetch(path, init);
    }
    let data = null;
    try { data = await res.json(); } catch { /* empty or not JSON */ }
    if (res.status === 401) {
      await askPassword(auth !== null);
      continue;
    }
    if (!res.ok) {
      const err = data && data.error ? data.error : {};
      throw new ApiError(res.status, err.code || String(res.status), err.message || res.statusText);
    }
    return data;
  }
}

export const roomPath = (code) => `/api/rooms/${encodeURIComponent(code)}`;

// Keys and values are bytes: a JSON message carries "key" (UTF-8 text) or
// "key_b64" (base64). A key's identity in the dashboard is its text, or
// "\0b64:" + base64 for binary keys (which cannot collide with text keys).
export function keyId(msg) {
  return msg.key !== undefined ? msg.key : "\u0000b64:" + msg.key_b64;
}
export function keyLabel(id) {
  return id.startsWith("\u0000b64:") ? `(binary) ${id.slice(5)}` : id;
}
export function keyField(id) {
  return id.startsWith("\u0000b64:") ? { key_b64: id.slice(5) } : { key: id };
}
export function valueOf(msg) {
  return msg.value !== undefined ? { text: msg.value, binary: false } : { text: msg.value_b64, binary: true };
}

// A live mirror of a room over the WebSocket, reconnecting and resuming from
// the last applied revision. Calls handlers.onMessage(msg) for every message
// and handlers.onStatus(text) when the connection state changes.
export class RoomSocket {
  constructor(code, handlers) {
    this.code = code;
    this.handlers = handlers;
    this.prefix = "";
    this.lastRev = null;   // last revision applied after "ready" (for resuming)
    this.ready = false;
    this.nextId = 1;
    this.pending = new Map();
    this.closed = false;
    this.open();
  }

  open() {
    const params = new URLSearchParams();
    if (this.prefix) params.set("prefix", this.prefix);
    if (this.lastRev !== null) params.set("from", String(this.lastRev));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = params.toString();
    this.ws = new WebSocket(`${scheme}://${location.host}${roomPath(this.code)}/ws${query ? "?" + query : ""}`,
      wsProtocols());
    this.handlers.onStatus("connecting");
    let opened = false;
    this.ws.onopen = () => { opened = true; this.handlers.onStatus("live"); };
    this.ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    this.ws.onclose = () => {
      for (const [, p] of this.pending) p.reject(new Error("connection lost"));
      this.pending.clear();
      if (this.closed) return;
      if (!this.ready) this.lastRev = null;  // an interrupted snapshot cannot be resumed
      this.ready = false;
      this.handlers.onStatus("reconnecting");
      // A refused handshake shows no status to scripts; if it was the
      // password, a plain request gets the 401 and asks for it.
      const auth = opened ? Promise.resolve() : api("GET", roomPath(this.code)).catch(() => {});
      auth.then(() => setTimeout(() => { if (!this.closed) this.open(); }, 1000));
    };
  }

  receive(msg) {
    switch (msg.type) {
      case "mirror": this.ready = false; break;
      case "ready": this.ready = true; this.lastRev = msg.revision; break;
      case "set": case "del": case "flush":
        if (this.ready) this.lastRev = msg.revision;
        break;
      case "result": {
        const p = this.pending.get(msg.id);
        if (p) {
          this.pending.delete(msg.id);
          if (msg.ok) p.resolve(msg); else p.reject(new ApiError(0, msg.error.code, msg.error.message));
        }
        return;
      }
    }
    this.handlers.onMessage(msg);
  }

  // Sends an op; resolves with its result once the write has applied.
  request(op) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...op, id }));
    });
  }

  setPrefix(prefix) {
    this.prefix = prefix;
    this.lastRev = null;
    this.ready = false;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ op: "mirror", prefix }));
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
