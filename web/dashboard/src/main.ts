// The ktwin dashboard: the twin graph (canvas and keyboard tree), the twin panel, the live
// view, the model view and the time slider, over ktwin's public HTTP API.

import "./style.css";

import { Api, storeToken } from "./api";
import { h, clear } from "./dom";
import { GraphColours } from "./graph-colours";
import { GraphView } from "./graph-view";
import { LiveView } from "./live";
import { metrics } from "./metrics";
import { ModelView } from "./model-view";
import { FOLLOW_EVERY_MS, TwinPanel, describe } from "./panel";
import { SearchBox } from "./search";
import { TimeTravel } from "./time-travel";
import { TreeView } from "./tree-view";
import { TwinGraph } from "./twin-graph";
import { ViewTree, twinKey } from "./view-tree";

type ViewName = "graph" | "live" | "model";

class Dashboard {
  private readonly api = new Api();
  private graph: TwinGraph | null = null;
  private tree: ViewTree | null = null;
  private colours: GraphColours | null = null;
  private panel: TwinPanel | null = null;
  private readonly time = new TimeTravel();
  private readonly model = new ModelView(this.api);
  private readonly live = new LiveView(this.api, (event) => this.panel?.eventOf(event.source));
  private readonly search = new SearchBox(() => this.graph, (name) => this.openTwin(name));
  private readonly treeView = new TreeView({ select: (t) => this.openTwin(t), toggle: (k) => this.toggle(k) });
  private readonly canvas = h("div", { id: "graph-canvas", "aria-hidden": "true" });
  private graphView: GraphView | null = null;
  private readonly colourBy = h("select", { id: "colour-by" }, h("option", { value: "" }, "interface"));
  private readonly mode = h("select", { id: "graph-mode" },
    h("option", { value: "containment" }, "containment"), h("option", { value: "interfaces" }, "interfaces"));
  private readonly legend = h("div", { class: "legend", id: "legend", "aria-live": "polite" });
  private readonly message = h("p", { id: "message", role: "status" });
  private readonly graphSection: HTMLElement;
  private readonly panelSlot = h("div", { class: "panel-slot" });
  private readonly nav: HTMLElement;
  private readonly login: HTMLDialogElement;

  constructor(private readonly root: HTMLElement) {
    this.graphSection = h("section", { id: "graph-view", class: "view graph-layout", "aria-label": "Twin graph" },
      h("div", { class: "sidebar" },
        h("p", { class: "toolbar" }, h("label", { for: "graph-mode" }, "Group by "), this.mode),
        h("p", { class: "toolbar" }, h("label", { for: "colour-by" }, "Colour by "), this.colourBy),
        this.legend, this.treeView.element),
      this.canvas, this.panelSlot);
    this.nav = h("nav", { class: "views", "aria-label": "Views" },
      (["graph", "live", "model"] as ViewName[]).map((v) =>
        h("button", { type: "button", "data-view": v, onclick: () => this.show(v) }, v[0].toUpperCase() + v.slice(1))));
    this.login = this.loginDialog();
    this.api.onUnauthorized = () => this.askToken("The server asks for a token (401).");
    this.colourBy.addEventListener("change", () => void this.recolour());
    this.mode.addEventListener("change", () => this.redraw());
    // One timer for whichever panel is current: a reload (a new token) replaces the panel.
    setInterval(() => this.panel?.follow(), FOLLOW_EVERY_MS);
    this.time.onChange(() => {
      this.panel?.refresh();
      void this.recolour();
    });
  }

  private loginDialog(): HTMLDialogElement {
    const input = h("input", { id: "token", type: "password", autocomplete: "off" });
    const reason = h("p", { id: "login-reason" });
    const form = h("form", { method: "dialog" },
      h("h2", {}, "Sign in"), reason,
      h("label", { for: "token" }, "Bearer token"), input,
      h("p", { class: "toolbar" }, h("button", { type: "submit", value: "ok" }, "Use token"), h("button", { type: "submit", value: "clear" }, "Forget token")));
    const dialog = h("dialog", { id: "login", "aria-labelledby": "login-title" }, form);
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "ok" && input.value) this.setToken(input.value);
      if (dialog.returnValue === "clear") this.setToken(null);
    });
    return dialog;
  }

  private askToken(reason: string): void {
    if (this.login.open) return;
    this.login.querySelector("#login-reason")!.textContent = reason;
    this.login.showModal();
  }

  private setToken(token: string | null): void {
    this.api.token = token;
    storeToken(token);
    void this.load();
  }

  mount(): void {
    const signIn = h("button", { type: "button", id: "sign-in", onclick: () => this.askToken("Calls carry this token in an Authorization header.") }, "Token");
    clear(this.root,
      h("header", { class: "top" },
        h("h1", {}, "ktwin"), this.nav, this.search.element, this.time.element,
        h("p", { class: "live-summary" }, "Live events: ", this.live.counter), signIn),
      h("main", { id: "main", tabindex: -1 }, this.message, this.graphSection, this.live.element, this.model.element),
      this.login);
    this.graphView = new GraphView(this.canvas, {
      select: (twin) => this.openTwin(twin),
      toggle: (key) => this.toggle(key),
      selectInterface: (iface) => {
        this.show("model");
        this.model.show(iface);
      },
    });
    this.show("graph");
    document.addEventListener("keydown", (event) => {
      if (event.key === "/" && !(event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement)) {
        event.preventDefault();
        this.search.focus();
      }
    });
    window.addEventListener("resize", () => this.graphView?.resize());
    void this.load();
  }

  private show(view: ViewName): void {
    this.graphSection.hidden = view !== "graph";
    this.live.element.hidden = view !== "live";
    this.model.element.hidden = view !== "model";
    for (const button of this.nav.querySelectorAll<HTMLElement>("button")) {
      if (button.dataset.view === view) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
    if (view === "graph") requestAnimationFrame(() => this.graphView?.resize());
  }

  private async load(): Promise<void> {
    this.message.textContent = "Loading the twin graph…";
    try {
      this.graph = new TwinGraph(await this.api.graph());
    } catch (err) {
      this.message.textContent = `The twin graph is not available: ${describe(err)}`;
      this.message.className = "error";
      return;
    }
    metrics.twins = this.graph.size;
    this.message.textContent = "";
    this.tree = new ViewTree(this.graph);
    this.tree.expandInitially();
    this.colours = new GraphColours(this.api, this.graph);
    this.panel = new TwinPanel({
      api: this.api, graph: this.graph, model: () => this.model.model, moment: () => this.time.moment,
      open: (t) => this.openTwin(t),
      showInterface: (dtmi) => {
        this.show("model");
        this.model.show(dtmi);
      },
    }, () => {
      this.graphView?.resize();
      this.graphView?.select(null);
      this.treeView.select(null);
    });
    this.panelSlot.replaceChildren(this.panel.element);
    this.redraw();
    // After the frame that paints the graph: what "first render" means to a person.
    requestAnimationFrame(() => {
      metrics.firstRenderMs = performance.now();
      document.body.dataset.graphReady = "true";
    });
    this.live.start();
    void this.model.load();
    void this.refreshFields();
  }

  private redraw(): void {
    if (!this.tree || !this.graphView || !this.graph) return;
    if (this.mode.value === "interfaces") {
      this.graphView.showInterfaces(this.graph, this.graph.interfaceLinks());
      this.treeView.show(this.tree.visible());
      return;
    }
    const nodes = this.tree.visible();
    this.graphView.showTree(nodes, new Map());
    this.treeView.show(nodes);
    if (this.panel?.current) this.graphView.select(this.panel.current);
    void this.recolour();
  }

  private toggle(key: string): void {
    this.tree?.toggle(key);
    this.redraw();
    void this.refreshFields();
  }

  private openTwin(name: string): void {
    if (!this.graph?.twins.has(name) || !this.tree || !this.panel) return;
    this.show("graph");
    const visible = this.tree.visible().some((n) => n.key === twinKey(name));
    if (!visible) {
      this.tree.reveal(name);
      this.redraw();
    }
    this.panel.open(name);
    this.graphView?.resize();
    this.graphView?.select(name);
    this.treeView.select(name);
  }

  private async refreshFields(): Promise<void> {
    if (!this.tree || !this.colours) return;
    const fields = await this.colours.fields(this.tree.visible());
    const chosen = this.colourBy.value;
    clear(this.colourBy, h("option", { value: "" }, "interface"),
      fields.map((f) => h("option", { value: f, selected: f === chosen }, f)));
  }

  private async recolour(): Promise<void> {
    if (!this.tree || !this.colours || !this.graphView) return;
    const field = this.colourBy.value;
    const nodes = this.tree.visible();
    if (!field) {
      this.graphView.recolour(new Map());
      clear(this.legend);
      return;
    }
    const moment = this.time.moment;
    const { fills, scale } = await this.colours.colour(nodes, field, moment);
    if (field !== this.colourBy.value || moment !== this.time.moment) return;
    this.graphView.recolour(fills);
    clear(this.legend, h("p", {}, `${field} ${moment ? "at the chosen time" : "now"}`),
      h("ul", {}, scale.legend.map((l) => h("li", {}, h("span", { class: "swatch", style: `background:${l.colour}` }), l.label))));
  }
}

declare global {
  interface Window {
    ktwinDashboard: { metrics: typeof metrics };
  }
}

window.ktwinDashboard = { metrics };
new Dashboard(document.getElementById("app")!).mount();
