// An interface as DTDL declares it: properties, telemetry, commands with their request schema,
// relationships and components (own and inherited), for the twin panel and the model view.

import { h } from "./dom";
import type { Content, ModelInterface } from "./model-types";
import { schemaLabel, text } from "./model-types";

const KINDS: Content["kind"][] = ["Property", "Telemetry", "Command", "Relationship", "Component"];

function detail(content: Content): string {
  switch (content.kind) {
    case "Property":
      return `${schemaLabel(content.schema)}${content.writable ? " (writable)" : ""}`;
    case "Telemetry":
      return schemaLabel(content.schema);
    case "Command":
      return content.request ? `request ${content.request.name}: ${schemaLabel(content.request.schema)}` : "no request";
    case "Relationship":
      return `→ ${content.target ?? "any interface"}${content.maxMultiplicity !== undefined ? ` (at most ${content.maxMultiplicity})` : ""}`;
    case "Component":
      return content.schema;
  }
}

/** A table per content kind; `onInterface` makes referenced DTMIs links. */
export function interfaceView(iface: ModelInterface, onInterface?: (dtmi: string) => void): HTMLElement {
  const link = (dtmi: string) =>
    onInterface ? h("button", { type: "button", class: "link", onclick: () => onInterface(dtmi) }, dtmi) : h("code", {}, dtmi);
  const sections = KINDS.map((kind) => {
    const contents = iface.contents.filter((c) => c.kind === kind);
    if (contents.length === 0) return null;
    return h("section", { class: "contents" },
      h("h4", {}, `${kind === "Property" ? "Properties" : kind === "Telemetry" ? "Telemetry" : `${kind}s`} (${contents.length})`),
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Schema"), h("th", { scope: "col" }, "Declared in"))),
        h("tbody", {}, contents.map((c) => h("tr", {},
          h("th", { scope: "row", title: text(c.description) ?? "" }, c.name),
          h("td", {}, detail(c)),
          h("td", {}, c.origin === iface.id ? "here" : link(c.origin))))),
      ));
  });
  return h("div", { class: "interface-view" },
    h("p", { class: "dtmi" }, h("code", {}, iface.id), ` · DTDL v${iface.dtdlVersion}`),
    text(iface.description) ? h("p", {}, text(iface.description)!) : null,
    iface.extends?.length ? h("p", {}, "Extends ", iface.extends.map((e, i) => [i > 0 ? ", " : "", link(e)]).flat()) : null,
    sections);
}
