// The server's password, when it has one (--requirepass): asked for once,
// when the API first answers 401, and kept in sessionStorage (so it lasts as
// long as the tab, and no other site or later session can read it).
//
// HTTP requests carry it as "Authorization: Bearer <password>"; the room
// WebSocket, which cannot carry headers from a browser, offers it as the
// subprotocol "distri.auth.<base64url(password)>" beside "distri" (the one
// the server echoes). See docs/http.md, "Authentication".

import { el } from "./dom.js";

const KEY = "distri.password";
let asking = null;  // the prompt on screen, shared by every request that got 401

export function password() {
  return sessionStorage.getItem(KEY);
}

// The password's UTF-8 bytes as a string of byte values: what fetch() sends
// as-is in a header, and what btoa() takes.
function utf8Bytes(s) {
  return String.fromCharCode(...new TextEncoder().encode(s));
}

export function authHeader() {
  const p = password();
  return p === null ? null : `Bearer ${utf8Bytes(p)}`;
}

export function wsProtocols() {
  const p = password();
  if (p === null) return ["distri"];
  const token = btoa(utf8Bytes(p)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["distri", `distri.auth.${token}`];
}

// Shows the password form; resolves once the user has entered one.
// `wrong`: the stored password was refused.
export function askPassword(wrong) {
  sessionStorage.removeItem(KEY);
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = el("input", { id: "auth-password", type: "password", autocomplete: "current-password",
      required: true, "aria-label": "password" });
    const form = el("form", { id: "auth-form", class: "inline", onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, input.value);
      dialog.close();
      dialog.remove();
      asking = null;
      resolve();
    } }, input, el("button", { type: "submit", id: "auth-submit", class: "primary" }, "Sign in"));
    const dialog = el("dialog", { id: "auth-dialog", "aria-labelledby": "auth-title" },
      el("h2", { id: "auth-title" }, "Password required"),
      el("p", { class: wrong ? "error" : "muted", role: wrong ? "alert" : undefined },
        wrong ? "That password was refused. Try again." : "This server needs its password (--requirepass)."),
      form);
    // Escape would close the dialog with no password: keep it open.
    dialog.addEventListener("cancel", (e) => e.preventDefault());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return asking;
}
