// The dashboard's clock: live (null) or a moment in the past chosen with the time slider. The
// graph's colours and the twin panel's state follow it.

import { h, formatTime } from "./dom";

export type Moment = Date | null;

/** Windows the slider can span, back from now. */
export const WINDOWS: [string, number][] = [
  ["15 min", 15 * 60_000],
  ["1 hour", 60 * 60_000],
  ["6 hours", 6 * 60 * 60_000],
  ["24 hours", 24 * 60 * 60_000],
  ["7 days", 7 * 24 * 60 * 60_000],
];

/** Slider steps over a window. */
const STEPS = 600;

export class TimeTravel {
  readonly element: HTMLElement;
  private at: Moment = null;
  private readonly listeners: ((at: Moment) => void)[] = [];
  private readonly slider: HTMLInputElement;
  private readonly label: HTMLOutputElement;
  private readonly live: HTMLButtonElement;
  private readonly windowSelect: HTMLSelectElement;
  /** The window's end when the slider was last moved (the slider counts back from it). */
  private end = Date.now();
  private debounce: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    this.slider = h("input", {
      id: "time-slider", type: "range", min: 0, max: STEPS, value: STEPS, step: 1,
      "aria-describedby": "time-label",
    });
    this.label = h("output", { id: "time-label", for: "time-slider" }, "live");
    this.live = h("button", { type: "button", id: "time-live", disabled: true }, "Back to live");
    this.windowSelect = h("select", { id: "time-window", "aria-label": "Time slider window" },
      WINDOWS.map(([name, ms], i) => h("option", { value: String(ms), selected: i === 1 }, name)));
    this.element = h("div", { class: "time-travel", role: "group", "aria-label": "Time travel" },
      h("label", { for: "time-slider" }, "Time"), this.slider, this.label, this.windowSelect, this.live);
    this.slider.addEventListener("input", () => this.moved());
    this.live.addEventListener("click", () => this.set(null));
    this.windowSelect.addEventListener("change", () => this.moved());
  }

  get moment(): Moment {
    return this.at;
  }

  onChange(listener: (at: Moment) => void): void {
    this.listeners.push(listener);
  }

  private moved(): void {
    const step = Number(this.slider.value);
    if (step >= STEPS) {
      this.set(null);
      return;
    }
    if (this.at === null) this.end = Date.now();
    const span = Number(this.windowSelect.value);
    this.setQuietly(new Date(this.end - ((STEPS - step) / STEPS) * span));
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.notify(), 250);
  }

  /** Goes to `at` (null = live), moving the slider to match. */
  set(at: Moment): void {
    if (at === null) {
      this.slider.value = String(STEPS);
    } else {
      if (this.at === null) this.end = Date.now();
      const span = Number(this.windowSelect.value);
      this.slider.value = String(Math.max(0, Math.round(STEPS - ((this.end - at.getTime()) / span) * STEPS)));
    }
    this.setQuietly(at);
    this.notify();
  }

  private setQuietly(at: Moment): void {
    this.at = at;
    this.label.value = at ? formatTime(at) : "live";
    this.slider.setAttribute("aria-valuetext", at ? formatTime(at) : "live");
    this.live.disabled = at === null;
    document.body.classList.toggle("in-the-past", at !== null);
  }

  private notify(): void {
    for (const listener of this.listeners) listener(this.at);
  }
}
