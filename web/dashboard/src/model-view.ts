// The model view: the project's DTDL interfaces with their inheritance and contents, and the
// validation findings, each shown at the interface (document) it is about.

import type { Api } from "./api";
import { h, clear } from "./dom";
import { interfaceView } from "./interface-view";
import type { Diagnostic, ModelDoc, ModelInterface } from "./model-types";
import { text } from "./model-types";
import { describe } from "./panel";

export class ModelView {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private readonly detail: HTMLElement;
  private readonly findings: HTMLElement;
  private doc: ModelDoc | null = null;

  constructor(private readonly api: Api) {
    this.list = h("ul", { class: "interface-list", "aria-label": "Interfaces" });
    this.detail = h("div", { class: "interface-detail", id: "model-detail", tabindex: -1 });
    this.findings = h("div", { class: "findings" });
    this.element = h("section", { id: "model-view", class: "view", "aria-labelledby": "model-heading" },
      h("h2", { id: "model-heading" }, "Model"), this.findings,
      h("div", { class: "model-columns" }, h("nav", { "aria-label": "Interfaces" }, this.list), this.detail));
  }

  get model(): ModelDoc | null {
    return this.doc;
  }

  async load(): Promise<ModelDoc | null> {
    try {
      this.doc = await this.api.model();
    } catch (err) {
      clear(this.findings, h("p", { class: "error", role: "alert" }, `The model is not available: ${describe(err)}`));
      return null;
    }
    this.render();
    return this.doc;
  }

  private render(): void {
    const doc = this.doc!;
    const errors = doc.diagnostics.filter((d) => d.severity === "error").length;
    clear(this.findings, h("p", { class: errors ? "error" : "ok" },
      `${doc.interfaces.length} interfaces; ${errors} errors, ${doc.diagnostics.length - errors} warnings.`),
    this.unplaced(doc));
    const sorted = [...doc.interfaces].sort((a, b) => a.name.localeCompare(b.name));
    clear(this.list, sorted.map((iface) => {
      const count = this.diagnosticsOf(iface).length;
      return h("li", {}, h("button", { type: "button", class: "link", onclick: () => this.show(iface.id) },
        iface.name, count ? h("span", { class: "badge", "aria-label": `${count} findings` }, String(count)) : null));
    }));
  }

  /** Findings whose document defines no interface of the model (a file that failed to parse). */
  private unplaced(doc: ModelDoc): HTMLElement | null {
    const placed = new Set(doc.interfaces.flatMap((i) => this.diagnosticsOf(i)));
    const rest = doc.diagnostics.filter((d) => !placed.has(d));
    return rest.length ? findingList(rest) : null;
  }

  private diagnosticsOf(iface: ModelInterface): Diagnostic[] {
    return (this.doc?.diagnostics ?? []).filter((d) =>
      (iface.document !== undefined && d.document === iface.document) || d.value === iface.id || aboutInterface(d.primaryId, iface.id));
  }

  /** Shows the interface with DTMI or ktwin name `id`. */
  show(id: string): void {
    const iface = this.doc?.interfaces.find((i) => i.id === id || i.name === id);
    if (!iface) {
      clear(this.detail, h("p", {}, `${id} is not an interface of this model.`));
      return;
    }
    const children = this.doc!.interfaces.filter((i) => i.extends?.includes(iface.id));
    const findings = this.diagnosticsOf(iface);
    clear(this.detail,
      h("h3", {}, text(iface.displayName) ?? iface.name, " ", h("span", { class: "iface" }, iface.name)),
      findings.length ? findingList(findings) : null,
      interfaceView(iface, (dtmi) => this.show(dtmi)),
      children.length ? h("p", {}, "Extended by ", children.map((c, i) => [i ? ", " : "", h("button", { type: "button", class: "link", onclick: () => this.show(c.id) }, c.name)]).flat()) : null);
    this.detail.focus();
  }
}

function findingList(findings: Diagnostic[]): HTMLElement {
  return h("ul", { class: "diagnostics" }, findings.map((d) =>
    h("li", { class: d.severity },
      h("strong", {}, d.severity), ` ${d.message} `,
      h("code", {}, `${d.document}#${d.pointer}`))));
}

/** Whether an element DTMI is the interface `dtmi` or one of its (derived-id) parts. */
function aboutInterface(element: string | undefined, dtmi: string): boolean {
  if (!element) return false;
  if (element === dtmi) return true;
  const [path, version] = dtmi.split(";");
  return element.startsWith(`${path}:`) && element.endsWith(`;${version}`);
}
