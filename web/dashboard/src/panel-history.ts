// The twin panel's history tab: the events of a window (ending at the time slider's moment),
// newest first and paged, and a chart of the numeric fields they set.

import type { TwinEvent } from "./api";
import { chart } from "./chart";
import { h, formatTime, shortJson } from "./dom";
import { numericPaths } from "./flatten";
import type { PanelContext } from "./panel";
import { WINDOWS } from "./time-travel";

/** Events read for the chart at most (pages of 1000). */
const CHART_EVENTS = 5000;

let windowMs = WINDOWS[1][1];

export async function historyTab(ctx: PanelContext, iface: string, twin: string): Promise<HTMLElement> {
  const until = ctx.moment() ?? new Date();
  const since = new Date(until.getTime() - windowMs);
  const events: TwinEvent[] = [];
  let cursor: string | null = null;
  do {
    const page = await ctx.api.history(iface, twin, { since, until, limit: 1000, cursor });
    events.push(...page.items);
    cursor = page.next;
  } while (cursor && events.length < CHART_EVENTS);
  const container = h("div", { id: "twin-history" });
  const select = h("select", { id: "history-window" },
    WINDOWS.map(([name, ms]) => h("option", { value: String(ms), selected: ms === windowMs }, name)));
  select.addEventListener("change", async () => {
    windowMs = Number(select.value);
    container.replaceWith(await historyTab(ctx, iface, twin));
    document.getElementById("history-window")?.focus();
  });
  container.append(
    h("p", { class: "toolbar" }, h("label", { for: "history-window" }, "Window "), select,
      ` ${formatTime(since)} – ${formatTime(until)}: ${events.length}${cursor ? "+" : ""} events`),
    chartSection(events),
    table(events.slice(0, 200)),
  );
  if (events.length > 200) container.append(h("p", {}, `Showing the newest 200 of ${events.length} events.`));
  return container;
}

function chartSection(events: TwinEvent[]): HTMLElement {
  const oldestFirst = [...events].reverse();
  const paths = numericPaths(events.map((e) => e.eventData));
  const section = h("section", { class: "chart-section" }, h("h3", {}, "Numeric fields"));
  if (paths.length === 0) {
    section.append(h("p", {}, "No numeric field in this window."));
    return section;
  }
  const chosen = new Set(paths.slice(0, 3));
  const area = h("div", {});
  const draw = () => area.replaceChildren(chart(oldestFirst, [...chosen], 440));
  section.append(
    h("fieldset", { class: "series" }, h("legend", {}, "Fields to chart"),
      paths.map((path) => {
        const id = `series-${path}`;
        const box = h("input", { type: "checkbox", id, checked: chosen.has(path) });
        box.addEventListener("change", () => {
          if (box.checked) chosen.add(path);
          else chosen.delete(path);
          draw();
        });
        return h("span", { class: "series-choice" }, box, h("label", { for: id }, path));
      })),
    area);
  requestAnimationFrame(draw);
  return section;
}

function table(events: TwinEvent[]): HTMLElement {
  if (events.length === 0) return h("p", {}, "No event in this window.");
  return h("table", { class: "history" },
    h("caption", { class: "visually-hidden" }, "Events, newest first"),
    h("thead", {}, h("tr", {}, ["Time", "Type", "Id", "Data"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, events.map((e) => h("tr", { "data-event-id": e.id },
      h("td", { class: "time" }, formatTime(e.time)),
      h("td", {}, e.type),
      h("td", { class: "id" }, e.id),
      h("td", { class: "data", title: JSON.stringify(e.eventData) }, shortJson(e.eventData))))));
}
