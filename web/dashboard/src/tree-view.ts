// The keyboard way through the twin graph: an ARIA tree (WAI-ARIA APG "tree view") of the same
// visible nodes the canvas draws. Up/Down move, Right expands or enters, Left collapses or goes
// to the parent, Home/End jump, Enter/Space opens a twin or expands a group.

import { h } from "./dom";
import type { VisibleNode } from "./view-tree";

export interface TreeEvents {
  select(twin: string): void;
  toggle(key: string): void;
}

export class TreeView {
  readonly element: HTMLElement;
  private nodes: VisibleNode[] = [];
  private focused: string | null = null;
  private selected: string | null = null;

  constructor(private readonly events: TreeEvents) {
    this.element = h("ul", { role: "tree", "aria-label": "Twins by containment", class: "tree" });
    this.element.addEventListener("keydown", (event) => this.key(event));
    this.element.addEventListener("click", (event) => {
      const item = (event.target as HTMLElement).closest<HTMLElement>("[role=treeitem]");
      if (item) this.activate(item.dataset.key!, true);
    });
  }

  show(nodes: VisibleNode[]): void {
    this.nodes = nodes;
    if (!this.focused || !nodes.some((n) => n.key === this.focused)) this.focused = nodes[0]?.key ?? null;
    const items = nodes.map((node) => this.item(node));
    this.element.replaceChildren(...items);
  }

  private item(node: VisibleNode): HTMLElement {
    const twinSelected = node.kind === "twin" && node.twin === this.selected;
    return h(
      "li",
      {
        role: "treeitem",
        "data-key": node.key,
        "aria-level": node.depth + 1,
        "aria-expanded": node.expandable && node.kind !== "more" ? String(node.expanded) : null,
        "aria-selected": twinSelected ? "true" : "false",
        tabindex: node.key === this.focused ? 0 : -1,
        class: `tree-item ${node.kind}`,
        style: `padding-left: ${node.depth * 14 + 4}px`,
        title: node.kind === "twin" ? `${node.label} (${node.interface})` : node.label,
      },
      h("span", { class: "twisty", "aria-hidden": "true" }, node.expandable ? (node.expanded ? "▾" : "▸") : "·"),
      node.label,
    );
  }

  /** Marks the open twin. */
  select(twin: string | null): void {
    this.selected = twin;
    if (twin) this.focused = `t:${twin}`;
    this.show(this.nodes);
    this.scrollToFocus();
  }

  private scrollToFocus(): void {
    const item = this.itemOf(this.focused);
    item?.scrollIntoView({ block: "nearest" });
  }

  private itemOf(key: string | null): HTMLElement | null {
    if (!key) return null;
    return this.element.querySelector<HTMLElement>(`[data-key="${CSS.escape(key)}"]`);
  }

  private focus(key: string): void {
    this.itemOf(this.focused)?.setAttribute("tabindex", "-1");
    this.focused = key;
    const item = this.itemOf(key);
    item?.setAttribute("tabindex", "0");
    item?.focus();
  }

  private activate(key: string, byPointer: boolean): void {
    const node = this.nodes.find((n) => n.key === key);
    if (!node) return;
    this.focused = key;
    if (node.kind === "twin") this.events.select(node.twin!);
    if (node.kind !== "twin" || (byPointer && node.expandable)) this.events.toggle(key);
    this.itemOf(key)?.focus();
  }

  private key(event: KeyboardEvent): void {
    const index = this.nodes.findIndex((n) => n.key === this.focused);
    if (index < 0) return;
    const node = this.nodes[index];
    const move = (to: number) => this.focus(this.nodes[Math.max(0, Math.min(this.nodes.length - 1, to))].key);
    switch (event.key) {
      case "ArrowDown": move(index + 1); break;
      case "ArrowUp": move(index - 1); break;
      case "Home": move(0); break;
      case "End": move(this.nodes.length - 1); break;
      case "ArrowRight":
        if (node.expandable && !node.expanded && node.kind !== "more") this.events.toggle(node.key);
        else if (node.expanded) move(index + 1);
        break;
      case "ArrowLeft":
        if (node.expanded) this.events.toggle(node.key);
        else if (node.parentKey) this.focus(node.parentKey);
        break;
      case "Enter":
      case " ":
        this.activate(node.key, false);
        if (node.kind === "twin" && node.expandable && event.key === " ") this.events.toggle(node.key);
        break;
      default:
        return;
    }
    event.preventDefault();
    requestAnimationFrame(() => this.itemOf(this.focused)?.focus());
  }
}
