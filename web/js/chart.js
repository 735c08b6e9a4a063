// A small live line chart on a canvas: the last N samples of one series,
// scaled to its maximum, redrawn on every push.

import { el, formatNumber } from "./dom.js";

export class Sparkline {
  constructor(title, { points = 120, color = "#4f7cff" } = {}) {
    this.points = points;
    this.color = color;
    this.values = [];
    this.canvas = el("canvas", { class: "spark", role: "img", "aria-label": title });
    this.current = el("span", { class: "spark-value" }, "–");
    this.root = el("figure", { class: "card chart" },
      el("figcaption", {}, el("span", {}, title), this.current), this.canvas);
  }

  push(v) {
    this.values.push(v);
    if (this.values.length > this.points) this.values.shift();
    this.current.textContent = formatNumber(v);
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 300, h = c.clientHeight || 80;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const max = Math.max(1, ...this.values);
    g.strokeStyle = "rgba(128,128,128,0.25)";
    g.lineWidth = 1;
    for (const f of [0.25, 0.5, 0.75]) {
      g.beginPath();
      g.moveTo(0, Math.round(h * f) + 0.5);
      g.lineTo(w, Math.round(h * f) + 0.5);
      g.stroke();
    }
    g.fillStyle = "rgba(128,128,128,0.8)";
    g.font = "10px system-ui, sans-serif";
    g.fillText(formatNumber(max), 4, 11);
    if (this.values.length < 2) return;
    const step = w / (this.points - 1);
    const x0 = w - (this.values.length - 1) * step;
    const y = (v) => h - 2 - (v / max) * (h - 14);
    g.beginPath();
    this.values.forEach((v, i) => (i ? g.lineTo(x0 + i * step, y(v)) : g.moveTo(x0, y(v))));
    g.strokeStyle = this.color;
    g.lineWidth = 2;
    g.stroke();
    g.lineTo(w, h);
    g.lineTo(x0, h);
    g.closePath();
    g.fillStyle = this.color + "22";
    g.fill();
  }
}
