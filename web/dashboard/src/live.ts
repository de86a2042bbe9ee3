// The live view: events pushed by the server (`GET /api/v1/events/stream?type=…`, server-sent
// events), counted per interface per second, and the last ones. Pausing keeps the position:
// resuming asks the server for everything after the last event received.

import type { Api } from "./api";
import { h, clear, formatTime, shortJson } from "./dom";
import type { SseMessage, StreamStatus } from "./sse";
import { EventStream } from "./sse";

/** A CloudEvent as the stream sends it (structured mode JSON). */
export interface StreamedEvent {
  id: string;
  type: string;
  source: string;
  time?: string;
  data?: unknown;
}

/** Seconds over which rates are averaged. */
const RATE_WINDOW_S = 10;
/** Events listed. */
const LAST_EVENTS = 50;

/** The interface of a ktwin event type (`ktwin.real.city-pole` → `city-pole`). */
export function interfaceOfType(type: string): string {
  return type.split(".")[2] ?? type;
}

export class LiveView {
  readonly element: HTMLElement;
  readonly counter: HTMLElement;
  private stream: EventStream | null = null;
  private total = 0;
  private missed = 0;
  private readonly recent: StreamedEvent[] = [];
  /** Per interface, arrivals per second over the rate window (ring of counts). */
  private readonly buckets = new Map<string, number[]>();
  private second = Math.floor(Date.now() / 1000);
  private readonly filter: HTMLInputElement;
  private readonly toggle: HTMLButtonElement;
  private readonly status: HTMLElement;
  private readonly rates: HTMLElement;
  private readonly last: HTMLElement;

  constructor(private readonly api: Api, private readonly onEvent: (event: StreamedEvent) => void) {
    this.counter = h("span", { id: "live-counter", "aria-live": "off", title: "Events received from the live stream" }, "0");
    this.filter = h("input", { id: "live-filter", value: "ktwin.real.*", spellcheck: "false" });
    this.toggle = h("button", { type: "button", id: "live-toggle" }, "Pause");
    this.status = h("span", { id: "live-status", role: "status" }, "paused");
    this.rates = h("div", { class: "rates" });
    this.last = h("div", { class: "last-events" });
    const apply = h("button", { type: "button" }, "Apply");
    apply.addEventListener("click", () => this.restart());
    this.filter.addEventListener("keydown", (e) => e.key === "Enter" && this.restart());
    this.toggle.addEventListener("click", () => (this.stream?.status === "paused" ? this.resume() : this.pause()));
    this.element = h("section", { id: "live-view", class: "view", "aria-labelledby": "live-heading" },
      h("h2", { id: "live-heading" }, "Live events"),
      h("p", { class: "toolbar" },
        h("label", { for: "live-filter" }, "Event types "), this.filter, apply, this.toggle, " ", this.status),
      h("p", {}, "Received: ", h("strong", { id: "live-total" }, "0"), " ", h("span", { id: "live-missed" })),
      h("h3", {}, `Events per second by interface (last ${RATE_WINDOW_S} s)`), this.rates,
      h("h3", {}, `Last ${LAST_EVENTS} events`), this.last);
    setInterval(() => this.render(), 1000);
  }

  start(): void {
    const url = `${this.api.base}/api/v1/events/stream?type=${encodeURIComponent(this.filter.value.trim() || "*")}`;
    this.stream = new EventStream(url, () => this.api.headers(), (m) => this.message(m), (s, d) => this.statusChanged(s, d));
    this.stream.start();
  }

  private restart(): void {
    this.stream?.pause();
    this.start();
  }

  pause(): void {
    this.stream?.pause();
  }

  resume(): void {
    this.stream?.start();
  }

  private statusChanged(status: StreamStatus, detail?: string): void {
    this.status.textContent = detail ? `${status}: ${detail}` : status;
    this.toggle.textContent = status === "paused" ? "Resume" : "Pause";
  }

  private message(message: SseMessage): void {
    if (message.event === "gap") {
      this.missed += Number(JSON.parse(message.data).missed ?? 0);
      return;
    }
    let event: StreamedEvent;
    try {
      event = JSON.parse(message.data) as StreamedEvent;
    } catch {
      return;
    }
    this.total += 1;
    this.tick();
    const ring = this.buckets.get(interfaceOfType(event.type)) ?? new Array(RATE_WINDOW_S).fill(0);
    ring[this.second % RATE_WINDOW_S] += 1;
    this.buckets.set(interfaceOfType(event.type), ring);
    this.recent.unshift(event);
    if (this.recent.length > LAST_EVENTS) this.recent.length = LAST_EVENTS;
    this.counter.textContent = String(this.total);
    this.onEvent(event);
  }

  /** Moves the rate window to the current second, zeroing the seconds that passed. */
  private tick(): void {
    const now = Math.floor(Date.now() / 1000);
    for (let s = this.second + 1; s <= Math.min(now, this.second + RATE_WINDOW_S); s++) {
      for (const ring of this.buckets.values()) ring[s % RATE_WINDOW_S] = 0;
    }
    this.second = now;
  }

  private render(): void {
    this.tick();
    document.getElementById("live-total")!.textContent = String(this.total);
    document.getElementById("live-missed")!.textContent = this.missed ? `(${this.missed} missed: the server no longer held them)` : "";
    if (this.element.hidden) return;
    const rows = [...this.buckets].map(([iface, ring]) => [iface, ring.reduce((a, b) => a + b, 0) / RATE_WINDOW_S] as const)
      .filter(([, rate]) => rate > 0).sort((a, b) => b[1] - a[1]);
    clear(this.rates, rows.length === 0 ? h("p", {}, "No event in the window.") : h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Interface"), h("th", { scope: "col" }, "Events/s"))),
      h("tbody", {}, rows.map(([iface, rate]) => h("tr", {}, h("th", { scope: "row" }, iface), h("td", { class: "number" }, rate.toFixed(1)))))));
    clear(this.last, h("table", { class: "history" },
      h("thead", {}, h("tr", {}, ["Time", "Type", "Twin", "Data"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, this.recent.map((e) => h("tr", {},
        h("td", { class: "time" }, e.time ? formatTime(e.time) : ""), h("td", {}, e.type), h("td", {}, e.source),
        h("td", { class: "data" }, shortJson(e.data)))))));
  }
}
