// The twin graph as the dashboard navigates it: an index of instances, the containment tree
// (city → neighbourhood → pole → sensors) and interface aggregates, built once from
// `GET /api/v1/twin-graph`.
//
// Containment is not a DTDL notion and worlds declare relationships in both directions
// (`refCityPoles` and its inverse `refNeighborhood`), so it is inferred: in each connected part
// of the graph the root is a twin of the rarest interface (the city: one instance) — among
// equally rare ones, the one whose name adds least to its interface's name, since a world
// names nested twins with their parents' suffixes (`…-nb001-p00001`) and a lone root group
// gets none — and every other twin hangs under the twin through which it is first reached,
// breadth first, over relationships in either direction. That puts each twin under its
// nearest twin towards the root, which is what a world's `children` nesting produces.

import type { GraphDoc, GraphRelationship } from "./api";

export interface Twin {
  name: string;
  interface: string;
  relationships: GraphRelationship[];
  /** Relationships of other twins pointing here. */
  incoming: { name: string; source: string }[];
  parent: string | null;
  /** Children by interface, each list sorted by name. */
  children: Map<string, string[]>;
  depth: number;
}

export interface InterfaceLink {
  from: string;
  to: string;
  relationship: string;
  count: number;
}

export class TwinGraph {
  readonly twins = new Map<string, Twin>();
  /** Roots by interface, sorted by name. */
  readonly roots = new Map<string, string[]>();
  /** Instance count per interface. */
  readonly interfaceCounts = new Map<string, number>();
  /** Names sorted, for search. */
  readonly names: string[];

  constructor(doc: GraphDoc) {
    for (const instance of doc.twinInstances) {
      this.twins.set(instance.name, {
        name: instance.name,
        interface: instance.interface,
        relationships: instance.relationships ?? [],
        incoming: [],
        parent: null,
        children: new Map(),
        depth: 0,
      });
      this.interfaceCounts.set(
        instance.interface,
        (this.interfaceCounts.get(instance.interface) ?? 0) + 1,
      );
    }
    for (const twin of this.twins.values()) {
      for (const rel of twin.relationships) {
        this.twins.get(rel.instance)?.incoming.push({ name: rel.name, source: twin.name });
      }
    }
    this.names = [...this.twins.keys()].sort();
    this.buildContainment();
  }

  get size(): number {
    return this.twins.size;
  }

  private neighbours(twin: Twin): string[] {
    const out = twin.relationships.map((r) => r.instance);
    for (const inc of twin.incoming) out.push(inc.source);
    return out.filter((n) => this.twins.has(n));
  }

  /** Rarest interface first, then shortest name suffix, then by name: the order in which roots are chosen. */
  private rootOrder(): string[] {
    const rank = (name: string): [number, number] => {
      const iface = this.twins.get(name)!.interface;
      const suffix = name.startsWith(iface) ? name.length - iface.length : name.length;
      return [this.interfaceCounts.get(iface)!, suffix];
    };
    return [...this.names].sort((a, b) => {
      const [ca, sa] = rank(a);
      const [cb, sb] = rank(b);
      return ca - cb || sa - sb || (a < b ? -1 : a > b ? 1 : 0);
    });
  }

  private buildContainment(): void {
    const seen = new Set<string>();
    for (const rootName of this.rootOrder()) {
      if (seen.has(rootName)) continue;
      seen.add(rootName);
      const root = this.twins.get(rootName)!;
      pushSorted(this.roots, root.interface, rootName);
      let frontier = [root];
      while (frontier.length > 0) {
        const next: Twin[] = [];
        for (const twin of frontier) {
          for (const name of this.neighbours(twin)) {
            if (seen.has(name)) continue;
            seen.add(name);
            const child = this.twins.get(name)!;
            child.parent = twin.name;
            child.depth = twin.depth + 1;
            pushSorted(twin.children, child.interface, name);
            next.push(child);
          }
        }
        frontier = next;
      }
    }
    for (const twin of this.twins.values()) for (const list of twin.children.values()) list.sort();
    for (const list of this.roots.values()) list.sort();
  }

  /** The twins from a root down to `name` (inclusive). */
  path(name: string): string[] {
    const out: string[] = [];
    let current: string | null = name;
    while (current) {
      out.unshift(current);
      current = this.twins.get(current)?.parent ?? null;
    }
    return out;
  }

  /** How many twins `name` contains, itself excluded, at any depth. */
  descendants(name: string): number {
    let count = 0;
    const stack = [name];
    while (stack.length > 0) {
      const twin = this.twins.get(stack.pop()!)!;
      for (const list of twin.children.values()) {
        count += list.length;
        stack.push(...list);
      }
    }
    return count;
  }

  /** Relationships between interfaces, counted over instances. */
  interfaceLinks(): InterfaceLink[] {
    const links = new Map<string, InterfaceLink>();
    for (const twin of this.twins.values()) {
      for (const rel of twin.relationships) {
        const key = `${twin.interface}\u0000${rel.name}\u0000${rel.interface}`;
        const link = links.get(key);
        if (link) link.count += 1;
        else links.set(key, { from: twin.interface, to: rel.interface, relationship: rel.name, count: 1 });
      }
    }
    return [...links.values()];
  }

  /**
   * Names matching `query`, best first: exact, then prefix, then prefix of a `-` separated part,
   * then substring; shorter and alphabetically earlier names first within a rank.
   */
  search(query: string, limit = 10): string[] {
    const needle = query.trim().toLowerCase();
    if (!needle) return [];
    const ranked: [number, string][] = [];
    for (const name of this.names) {
      const lower = name.toLowerCase();
      const at = lower.indexOf(needle);
      if (at < 0) continue;
      const rank = lower === needle ? 0 : at === 0 ? 1 : lower[at - 1] === "-" ? 2 : 3;
      ranked.push([rank, name]);
    }
    ranked.sort((a, b) => a[0] - b[0] || a[1].length - b[1].length || (a[1] < b[1] ? -1 : 1));
    return ranked.slice(0, limit).map(([, name]) => name);
  }
}

function pushSorted(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
