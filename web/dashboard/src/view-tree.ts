// What of the twin graph is on screen: the containment tree with twins grouped by interface
// under their parent (`city-pole ×50`), expanded on demand. The graph canvas and the keyboard
// tree both draw this same list, so expanding in one expands in the other.

import type { TwinGraph } from "./twin-graph";

/** Members of an expanded group shown before a "more" item. */
export const MEMBERS_SHOWN = 60;
/** Nodes the first view may show when it expands groups by itself. */
export const INITIAL_BUDGET = 80;

export type VisibleKind = "twin" | "group" | "more";

export interface VisibleNode {
  key: string;
  kind: VisibleKind;
  label: string;
  interface: string;
  parentKey: string | null;
  depth: number;
  /** The twin (kind twin). */
  twin?: string;
  /** Members of a group, or the members a "more" item stands for. */
  members?: string[];
  expandable: boolean;
  expanded: boolean;
}

export const twinKey = (name: string): string => `t:${name}`;
export const groupKey = (parent: string | null, iface: string): string => `g:${parent ?? ""}|${iface}`;
const moreKey = (group: string): string => `m:${group}`;

export class ViewTree {
  readonly expanded = new Set<string>();
  /** Twins shown even beyond a group's first members (found by search). */
  readonly pinned = new Set<string>();
  /** Members shown per group key. */
  readonly shown = new Map<string, number>();

  constructor(readonly graph: TwinGraph) {}

  private childGroups(parent: string | null): Map<string, string[]> {
    return parent === null ? this.graph.roots : this.graph.twins.get(parent)!.children;
  }

  /** The visible nodes, parents before children, siblings in order. */
  visible(): VisibleNode[] {
    const out: VisibleNode[] = [];
    this.addChildren(null, null, 0, out);
    return out;
  }

  private addChildren(parent: string | null, parentKey: string | null, depth: number, out: VisibleNode[]): void {
    for (const [iface, members] of this.childGroups(parent)) {
      if (members.length === 1) {
        this.addTwin(members[0], parentKey, depth, out);
        continue;
      }
      const key = groupKey(parent, iface);
      const expanded = this.expanded.has(key);
      out.push({
        key, kind: "group", label: `${iface} ×${members.length}`, interface: iface,
        parentKey, depth, members, expandable: true, expanded,
      });
      if (expanded) this.addMembers(key, members, depth + 1, out);
    }
  }

  private addMembers(key: string, members: string[], depth: number, out: VisibleNode[]): void {
    const limit = this.shown.get(key) ?? MEMBERS_SHOWN;
    const hidden: string[] = [];
    members.forEach((name, index) => {
      if (index < limit || this.pinned.has(name)) this.addTwin(name, key, depth, out);
      else hidden.push(name);
    });
    if (hidden.length > 0) {
      out.push({
        key: moreKey(key), kind: "more", label: `${hidden.length} more…`,
        interface: this.graph.twins.get(hidden[0])!.interface, parentKey: key, depth,
        members: hidden, expandable: true, expanded: false,
      });
    }
  }

  private addTwin(name: string, parentKey: string | null, depth: number, out: VisibleNode[]): void {
    const twin = this.graph.twins.get(name)!;
    const key = twinKey(name);
    const expandable = twin.children.size > 0;
    const expanded = expandable && this.expanded.has(key);
    out.push({
      key, kind: "twin", label: name, interface: twin.interface, parentKey, depth, twin: name,
      expandable, expanded,
    });
    if (expanded) this.addChildren(name, key, depth + 1, out);
  }

  /** Expands or collapses `key`; a "more" item shows the next members of its group. */
  toggle(key: string): void {
    if (key.startsWith("m:")) {
      const group = key.slice(2);
      this.shown.set(group, (this.shown.get(group) ?? MEMBERS_SHOWN) + MEMBERS_SHOWN);
    } else if (this.expanded.has(key)) {
      this.expanded.delete(key);
    } else {
      this.expanded.add(key);
    }
  }

  /** Expands everything on the way to `name` and pins the twins on it, so it is visible. */
  reveal(name: string): void {
    const path = this.graph.path(name);
    path.forEach((twin, index) => {
      this.pinned.add(twin);
      if (index > 0) {
        const parent = path[index - 1];
        this.expanded.add(twinKey(parent));
        const iface = this.graph.twins.get(twin)!.interface;
        if (this.graph.twins.get(parent)!.children.get(iface)!.length > 1) {
          this.expanded.add(groupKey(parent, iface));
        }
      } else {
        const iface = this.graph.twins.get(twin)!.interface;
        if (this.graph.roots.get(iface)!.length > 1) this.expanded.add(groupKey(null, iface));
      }
    });
  }

  /**
   * Expands level by level while the view stays within `budget` nodes; a level that would
   * exceed it is left collapsed as a whole, so siblings look alike.
   */
  expandInitially(budget = INITIAL_BUDGET): void {
    let frontier = this.visible().filter((n) => n.expandable && n.kind !== "more");
    while (frontier.length > 0) {
      for (const node of frontier) this.expanded.add(node.key);
      const after = this.visible();
      if (after.length > budget) {
        for (const node of frontier) this.expanded.delete(node.key);
        return;
      }
      const keys = new Set(frontier.map((n) => n.key));
      frontier = after.filter((n) => n.parentKey !== null && keys.has(n.parentKey) && n.expandable && n.kind !== "more");
    }
  }
}
