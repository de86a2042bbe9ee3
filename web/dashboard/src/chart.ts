// A chart of a twin's numeric fields over time (uPlot): one series per chosen field, a point
// per event that set it.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import type { TwinEvent } from "./api";
import { categorical } from "./colour";
import { h } from "./dom";
import { at } from "./flatten";

/** Series data for `paths` from `events` (oldest first): x in seconds, y null where unset. */
export function seriesOf(events: TwinEvent[], paths: string[]): uPlot.AlignedData {
  const xs: number[] = [];
  const ys: (number | null)[][] = paths.map(() => []);
  for (const event of events) {
    const values = paths.map((p) => at(event.eventData, p));
    if (!values.some((v) => typeof v === "number")) continue;
    xs.push(new Date(event.time).getTime() / 1000);
    values.forEach((v, i) => ys[i].push(typeof v === "number" ? v : null));
  }
  return [xs, ...ys];
}

export function chart(events: TwinEvent[], paths: string[], width: number): HTMLElement {
  const container = h("div", { class: "chart", role: "img", "aria-label": `Chart of ${paths.join(", ")} over time` });
  const data = seriesOf(events, paths);
  if (data[0].length === 0) {
    container.append(h("p", {}, "No numeric values in this window."));
    return container;
  }
  const options: uPlot.Options = {
    width: Math.max(280, width),
    height: 240,
    series: [{}, ...paths.map((path, i) => ({ label: path, stroke: categorical(i), width: 2, spanGaps: true, points: { show: true, size: 5 } }))],
    axes: [{ stroke: "#222" }, { stroke: "#222" }],
    scales: { x: { time: true } },
  };
  new uPlot(options, data, container);
  return container;
}
