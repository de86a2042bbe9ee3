// The twin panel: a twin's interface from DTDL, its state (latest or as of the time slider),
// its history, a chart of its numeric fields, its related twins and a form to send it
// commands. Tabs follow the WAI-ARIA APG tabs pattern (arrow keys move between tabs).

import type { Api } from "./api";
import { ApiError } from "./api";
import { h, clear, formatTime } from "./dom";
import { commandTab } from "./panel-command";
import { historyTab } from "./panel-history";
import { stateTab } from "./panel-state";
import { interfaceView } from "./interface-view";
import type { ModelDoc, ModelInterface } from "./model-types";
import { text } from "./model-types";
import type { Moment } from "./time-travel";
import type { TwinGraph } from "./twin-graph";

export interface PanelContext {
  api: Api;
  graph: TwinGraph;
  model: () => ModelDoc | null;
  moment: () => Moment;
  open(twin: string): void;
  showInterface(dtmi: string): void;
}

const TABS = ["State", "History", "Related", "Interface", "Commands"] as const;
type Tab = (typeof TABS)[number];

/** How often the dashboard asks an open State tab to re-read the latest state, whatever the
 * live stream brings (events outside its filter, a paused stream). */
export const FOLLOW_EVERY_MS = 5000;
/** The least time between two re-reads of the State tab. */
const FOLLOW_AT_MOST_EVERY_MS = 1000;

export class TwinPanel {
  readonly element: HTMLElement;
  private twin: string | null = null;
  private tab: Tab = "State";
  private readonly body: HTMLElement;
  private readonly heading: HTMLElement;
  private readonly tabList: HTMLElement;
  /** Bumped by every render: a render applies its content only while it is the latest. */
  private renders = 0;
  /** A re-read of the latest state is running, and whether another was asked for meanwhile. */
  private following = false;
  private followAgain = false;

  constructor(private readonly ctx: PanelContext, private readonly onClose: () => void) {
    this.heading = h("h2", { id: "panel-title", tabindex: -1 });
    this.tabList = h("div", { role: "tablist", "aria-labelledby": "panel-title", class: "tabs" });
    this.body = h("div", { role: "tabpanel", id: "panel-body", class: "panel-body", tabindex: 0 });
    const close = h("button", { type: "button", class: "close", "aria-label": "Close the twin panel" }, "×");
    close.addEventListener("click", () => this.close());
    this.element = h("aside", { id: "twin-panel", class: "panel", "aria-labelledby": "panel-title", hidden: true },
      h("header", {}, this.heading, close), this.tabList, this.body);
    this.tabList.addEventListener("keydown", (event) => this.tabKey(event));
  }

  get current(): string | null {
    return this.twin;
  }

  open(twin: string): void {
    this.twin = twin;
    this.element.hidden = false;
    const node = this.ctx.graph.twins.get(twin)!;
    clear(this.heading, twin, h("span", { class: "iface" }, node.interface));
    this.renderTabs();
    void this.renderBody();
    this.heading.focus();
  }

  close(): void {
    this.twin = null;
    this.element.hidden = true;
    this.onClose();
  }

  /** Re-reads what depends on the time slider. */
  refresh(): void {
    if (this.twin && (this.tab === "State" || this.tab === "History")) void this.renderBody();
  }

  /** An event of `twin` arrived (the live stream): the State tab of that twin re-reads the
   * latest state, so that a panel opened before the twin's first event, or left open, follows it. */
  eventOf(twin: string): void {
    if (twin === this.twin) this.follow();
  }

  /** Re-reads the open State tab in place (no "Loading…"), when it shows the latest state: at
   * most one re-read runs, at most one a second, and one asked for meanwhile runs after it. */
  follow(): void {
    if (!this.twin || this.tab !== "State" || this.ctx.moment() !== null) return;
    if (this.following) {
      this.followAgain = true;
      return;
    }
    this.following = true;
    void this.renderBody(true)
      .then(() => new Promise((done) => setTimeout(done, FOLLOW_AT_MOST_EVERY_MS)))
      .finally(() => {
        this.following = false;
        if (this.followAgain) {
          this.followAgain = false;
          this.follow();
        }
      });
  }

  private interfaceOf(twin: string): ModelInterface | undefined {
    const iface = this.ctx.graph.twins.get(twin)!.interface;
    return this.ctx.model()?.interfaces.find((i) => i.name === iface);
  }

  private renderTabs(): void {
    clear(this.tabList, TABS.map((tab) => {
      const button = h("button", {
        type: "button", role: "tab", id: `tab-${tab}`, "aria-controls": "panel-body",
        "aria-selected": String(tab === this.tab), tabindex: tab === this.tab ? 0 : -1,
      }, tab);
      button.addEventListener("click", () => this.choose(tab));
      return button;
    }));
    this.body.setAttribute("aria-labelledby", `tab-${this.tab}`);
  }

  private choose(tab: Tab): void {
    this.tab = tab;
    this.renderTabs();
    this.tabList.querySelector<HTMLElement>(`#tab-${tab}`)?.focus();
    void this.renderBody();
  }

  private tabKey(event: KeyboardEvent): void {
    const index = TABS.indexOf(this.tab);
    const to = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    this.choose(TABS[(to + TABS.length) % TABS.length]);
  }

  /** Renders the chosen tab of the open twin; `quietly` keeps the current content until the new
   * one is there. Only the latest render applies, so a slow one never replaces a newer tab. */
  private async renderBody(quietly = false): Promise<void> {
    const twin = this.twin;
    if (!twin) return;
    const render = ++this.renders;
    const node = this.ctx.graph.twins.get(twin)!;
    const iface = this.interfaceOf(twin);
    if (!quietly) clear(this.body, h("p", { class: "loading" }, "Loading…"));
    try {
      const content = await this.tabContent(this.tab, twin, node.interface, iface);
      if (render === this.renders) clear(this.body, content);
    } catch (err) {
      if (render === this.renders) clear(this.body, h("p", { class: "error", role: "alert" }, describe(err)));
    }
  }

  private async tabContent(tab: Tab, twin: string, ifaceName: string, iface: ModelInterface | undefined): Promise<HTMLElement> {
    switch (tab) {
      case "State":
        return stateTab(this.ctx, ifaceName, twin);
      case "History":
        return historyTab(this.ctx, ifaceName, twin);
      case "Related":
        return this.related(twin);
      case "Interface":
        return iface
          ? h("div", {}, h("h3", {}, text(iface.displayName) ?? iface.name), interfaceView(iface, (d) => this.ctx.showInterface(d)))
          : h("p", {}, `The model of ${ifaceName} is not available.`);
      case "Commands":
        return commandTab(this.ctx, ifaceName, twin, iface);
    }
  }

  private related(twin: string): HTMLElement {
    const node = this.ctx.graph.twins.get(twin)!;
    const button = (name: string) => h("button", { type: "button", class: "link", onclick: () => this.ctx.open(name) }, name);
    const parent = node.parent;
    return h("div", { class: "related" },
      parent ? h("p", {}, "Contained in ", button(parent)) : h("p", {}, "A root of the twin graph."),
      h("h3", {}, `Relationships (${node.relationships.length})`),
      node.relationships.length === 0 ? h("p", {}, "None.") :
        h("ul", {}, node.relationships.map((r) => h("li", {}, h("span", { class: "rel" }, r.name), " → ", button(r.instance), h("span", { class: "iface" }, r.interface)))),
      h("h3", {}, `Pointed at by (${node.incoming.length})`),
      node.incoming.length === 0 ? h("p", {}, "None.") :
        h("ul", {}, node.incoming.map((r) => h("li", {}, button(r.source), " → ", h("span", { class: "rel" }, r.name)))));
  }
}

export function describe(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  return `Failed: ${(err as Error).message ?? String(err)}`;
}

export function timeNote(at: Moment): string {
  return at ? `as of ${formatTime(at)}` : "latest";
}
