// The graph canvas (Cytoscape.js): the visible containment tree, or the interfaces and the
// relationships between them. Mouse and touch only; the keyboard tree beside it (tree-view.ts)
// offers the same navigation.

import cytoscape from "cytoscape";
import type { Core, ElementDefinition } from "cytoscape";

import { colourOf, textOn } from "./colour";
import type { InterfaceLink, TwinGraph } from "./twin-graph";
import type { VisibleNode } from "./view-tree";

export interface GraphViewEvents {
  /** A twin was clicked. */
  select(twin: string): void;
  /** A group or "more" item was clicked, or a twin double-clicked. */
  toggle(key: string): void;
  /** An interface node was clicked (interfaces mode). */
  selectInterface(iface: string): void;
}

/** Fill of each visible node key, when colouring by a state field. */
export type Fills = Map<string, string>;

const STYLE: cytoscape.StylesheetJson = [
  {
    selector: "node",
    style: {
      "background-color": "data(fill)",
      color: "#111111",
      label: "data(label)",
      "font-size": 11,
      "text-valign": "bottom",
      "text-margin-y": 4,
      "text-wrap": "ellipsis",
      "text-max-width": "120px",
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.85,
      "text-background-padding": "1px",
      width: 22,
      height: 22,
      "border-width": 1,
      "border-color": "#333333",
    },
  },
  {
    selector: "node.group, node.more",
    style: {
      shape: "round-rectangle",
      width: 46,
      height: 30,
      "font-weight": "bold",
      label: "data(count)",
      "text-valign": "center",
      "text-margin-y": 0,
      color: "data(ink)",
      "text-background-opacity": 0,
    },
  },
  { selector: "node.more", style: { "border-style": "dashed", "background-color": "#ffffff", color: "#111111" } },
  { selector: "node.expandable", style: { "border-width": 3 } },
  { selector: "node.interface", style: { shape: "round-rectangle", width: 60, height: 34, "text-valign": "bottom" } },
  {
    selector: "node:selected, node.selected",
    style: { "border-width": 5, "border-color": "#d00000", "overlay-opacity": 0 },
  },
  {
    selector: "edge",
    style: {
      width: 1.5,
      "line-color": "#777777",
      "target-arrow-color": "#777777",
      "target-arrow-shape": "triangle",
      "curve-style": "bezier",
      "arrow-scale": 0.8,
    },
  },
  {
    selector: "edge.link",
    style: { label: "data(label)", "font-size": 9, "text-rotation": "autorotate", color: "#222222", "text-background-color": "#ffffff", "text-background-opacity": 0.85 },
  },
];

/** The label of a twin: its name without the interface prefix instances usually carry. */
export function shortLabel(name: string, iface: string): string {
  return name.startsWith(`${iface}-`) ? name.slice(iface.length + 1) : name;
}

export class GraphView {
  readonly cy: Core;
  private mode: "containment" | "interfaces" = "containment";
  private selected: string | null = null;

  constructor(container: HTMLElement, private readonly events: GraphViewEvents) {
    this.cy = cytoscape({
      container,
      style: STYLE,
      minZoom: 0.05,
      maxZoom: 4,
      boxSelectionEnabled: false,
    });
    this.cy.on("tap", "node", (event) => this.tapped(event.target.data()));
    this.cy.on("dbltap", "node.twin", (event) => this.events.toggle(event.target.id()));
  }

  private tapped(data: { id: string; kind: string; twin?: string; iface?: string }): void {
    if (data.kind === "twin" && data.twin) this.events.select(data.twin);
    else if (data.kind === "interface" && data.iface) this.events.selectInterface(data.iface);
    else this.events.toggle(data.id);
  }

  /** Draws the containment tree's visible nodes. */
  showTree(nodes: VisibleNode[], fills: Fills): void {
    this.mode = "containment";
    const elements: ElementDefinition[] = [];
    for (const node of nodes) {
      const fill = fills.get(node.key) ?? (node.kind === "more" ? "#ffffff" : colourOf(node.interface));
      elements.push({
        group: "nodes",
        data: {
          id: node.key, kind: node.kind, twin: node.twin, iface: node.interface, fill, ink: textOn(fill),
          label: node.kind === "twin" ? shortLabel(node.label, node.interface) : node.label,
          count: node.kind === "group" ? `×${node.members!.length}` : node.kind === "more" ? `+${node.members!.length}` : "",
        },
        classes: [node.kind, node.expandable && !node.expanded && node.kind === "twin" ? "expandable" : ""].join(" "),
      });
      if (node.parentKey) {
        elements.push({ group: "edges", data: { id: `e:${node.key}`, source: node.parentKey, target: node.key } });
      }
    }
    this.replace(elements, () => this.treeLayout(nodes));
  }

  private treeLayout(nodes: VisibleNode[]): cytoscape.LayoutOptions {
    // Element ids, not selectors: keys hold characters a selector would need escaped.
    const roots = nodes.filter((n) => n.parentKey === null).map((n) => n.key);
    return { name: "breadthfirst", directed: true, roots, spacingFactor: 1.1, animate: false, fit: true, padding: 30 };
  }

  /** Draws one node per interface and the relationships between them. */
  showInterfaces(graph: TwinGraph, links: InterfaceLink[]): void {
    this.mode = "interfaces";
    const elements: ElementDefinition[] = [];
    for (const [iface, count] of graph.interfaceCounts) {
      const fill = colourOf(iface);
      elements.push({ group: "nodes", data: { id: `i:${iface}`, kind: "interface", iface, fill, ink: textOn(fill), label: `${iface} ×${count}` }, classes: "interface" });
    }
    for (const link of links) {
      elements.push({
        group: "edges",
        data: { id: `l:${link.from}|${link.relationship}|${link.to}`, source: `i:${link.from}`, target: `i:${link.to}`, label: `${link.relationship} (${link.count})` },
        classes: "link",
      });
    }
    this.replace(elements, () => ({ name: "cose", animate: false, fit: true, padding: 30, randomize: false, nodeRepulsion: () => 800000, idealEdgeLength: () => 120 }));
  }

  private replace(elements: ElementDefinition[], layout: () => cytoscape.LayoutOptions): void {
    // The container may have changed size (the panel opened) since the last drawing.
    this.cy.resize();
    this.cy.batch(() => {
      this.cy.elements().remove();
      this.cy.add(elements);
    });
    this.cy.layout(layout()).run();
    this.mark();
  }

  /** Recolours without a new layout. */
  recolour(fills: Fills): void {
    if (this.mode !== "containment") return;
    this.cy.batch(() => {
      this.cy.nodes().forEach((node) => {
        const data = node.data();
        const fill = fills.get(node.id()) ?? (data.kind === "more" ? "#ffffff" : colourOf(data.iface));
        node.data({ fill, ink: textOn(fill) });
      });
    });
  }

  /** Marks `twin` as the selected one and centres on it. */
  select(twin: string | null): void {
    this.selected = twin;
    this.mark();
    const node = twin ? this.cy.getElementById(`t:${twin}`) : null;
    if (node && node.nonempty()) this.cy.animate({ center: { eles: node }, duration: 200 });
  }

  private mark(): void {
    this.cy.nodes(".selected").removeClass("selected");
    if (this.selected) this.cy.getElementById(`t:${this.selected}`).addClass("selected");
  }

  resize(): void {
    this.cy.resize();
    this.cy.fit(undefined, 30);
  }
}
