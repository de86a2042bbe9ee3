// Colouring the graph by a state field: the latest states of the visible interfaces
// (`GET /api/v1/twins/{interface}`), or with the time slider in the past, each visible twin's
// state as of that moment (`GET …/state?at=T`). A group takes the mean of its members' numbers,
// or their most common value.

import type { Api } from "./api";
import type { Scale } from "./colour";
import { scaleFor } from "./colour";
import { pooled } from "./dom";
import { at, flatten } from "./flatten";
import type { Fills } from "./graph-view";
import type { Moment } from "./time-travel";
import type { TwinGraph } from "./twin-graph";
import type { VisibleNode } from "./view-tree";

/** Latest states are re-read after this long. */
const LATEST_TTL_MS = 5000;
/** Twins read one by one for a past moment, at most. */
const PAST_TWINS = 400;

type States = Map<string, Record<string, unknown>>;

export class GraphColours {
  private latest = new Map<string, { read: number; states: States }>();

  constructor(private readonly api: Api, private readonly graph: TwinGraph) {}

  /** Interfaces whose twins are drawn (groups included). */
  private interfacesOf(nodes: VisibleNode[]): string[] {
    return [...new Set(nodes.filter((n) => n.kind !== "more").map((n) => n.interface))];
  }

  private async latestOf(iface: string): Promise<States> {
    const cached = this.latest.get(iface);
    if (cached && Date.now() - cached.read < LATEST_TTL_MS) return cached.states;
    const states: States = new Map();
    try {
      for (const s of await this.api.states(iface)) states.set(s.instanceId, s.state);
    } catch {
      // An interface without stored states, or no store: its twins stay uncoloured.
    }
    this.latest.set(iface, { read: Date.now(), states });
    return states;
  }

  /** Scalar fields of the visible interfaces' latest states, for the "colour by" choice. */
  async fields(nodes: VisibleNode[]): Promise<string[]> {
    const paths = new Set<string>();
    for (const iface of this.interfacesOf(nodes)) {
      for (const state of (await this.latestOf(iface)).values()) {
        for (const [path, value] of flatten(state)) if (value === null || typeof value !== "object") paths.add(path);
      }
    }
    return [...paths].sort();
  }

  /** The states needed to colour `nodes` at `moment`, by twin. */
  private async statesFor(nodes: VisibleNode[], moment: Moment): Promise<States> {
    if (moment === null) {
      const all: States = new Map();
      for (const iface of this.interfacesOf(nodes)) for (const [k, v] of await this.latestOf(iface)) all.set(k, v);
      return all;
    }
    const twins = [...new Set(nodes.flatMap((n) => (n.kind === "twin" ? [n.twin!] : n.kind === "group" ? n.members! : [])))].slice(0, PAST_TWINS);
    const states: States = new Map();
    await pooled(twins, 6, async (name) => {
      const state = await this.api.stateAt(this.graph.twins.get(name)!.interface, name, moment).catch(() => null);
      if (state) states.set(name, state.state);
    });
    return states;
  }

  /** Fills per visible node key for `field`, and the scale's legend. */
  async colour(nodes: VisibleNode[], field: string, moment: Moment): Promise<{ fills: Fills; scale: Scale }> {
    const states = await this.statesFor(nodes, moment);
    const valueOf = (twin: string) => {
      const state = states.get(twin);
      return state ? at(state, field) : undefined;
    };
    const nodeValues = new Map<string, unknown>();
    for (const node of nodes) {
      if (node.kind === "twin") nodeValues.set(node.key, valueOf(node.twin!));
      else if (node.kind === "group") nodeValues.set(node.key, summary(node.members!.map(valueOf)));
    }
    const scale = scaleFor([...nodeValues.values()]);
    const fills: Fills = new Map();
    for (const [key, value] of nodeValues) if (value !== undefined && value !== null) fills.set(key, scale.colour(value));
    return { fills, scale };
  }
}

/** The mean of numbers, else the most common value, else undefined. */
export function summary(values: unknown[]): unknown {
  const present = values.filter((v) => v !== undefined && v !== null);
  if (present.length === 0) return undefined;
  if (present.every((v) => typeof v === "number")) return (present as number[]).reduce((a, b) => a + b, 0) / present.length;
  const counts = new Map<string, [number, unknown]>();
  for (const v of present) {
    const key = JSON.stringify(v);
    const entry = counts.get(key);
    if (entry) entry[0] += 1;
    else counts.set(key, [1, v]);
  }
  return [...counts.values()].sort((a, b) => b[0] - a[0])[0][1];
}
