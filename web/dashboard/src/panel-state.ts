// The twin panel's state tab: the merged state now, or as of the time slider's moment
// (`GET …/latest`, `GET …/state?at=T`), as a table of fields.

import { display } from "./colour";
import { h, formatTime } from "./dom";
import { flatten } from "./flatten";
import type { PanelContext } from "./panel";
import { timeNote } from "./panel";

export async function stateTab(ctx: PanelContext, iface: string, twin: string): Promise<HTMLElement> {
  const at = ctx.moment();
  const state = await ctx.api.stateAt(iface, twin, at);
  if (!state) {
    return h("div", { id: "twin-state", "data-state": "none" },
      h("p", {}, at ? `No event of ${twin} at or before ${formatTime(at)}.` : `No event stored for ${twin} yet.`));
  }
  const rows = flatten(state.state);
  return h("div", { id: "twin-state", "data-state": "loaded", "data-event-id": state.id, "data-time": state.time },
    h("p", { class: "note" }, `State ${timeNote(at)}: merged up to event `, h("code", {}, state.id),
      ` (${state.type}) at ${formatTime(state.time)}`),
    h("table", { class: "state" },
      h("caption", { class: "visually-hidden" }, `State of ${twin}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Value"))),
      h("tbody", {}, rows.map(([path, value]) =>
        h("tr", {}, h("th", { scope: "row" }, path), h("td", { class: typeof value === "number" ? "number" : "" }, display(value)))))));
}
