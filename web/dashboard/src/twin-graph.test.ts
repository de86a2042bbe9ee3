import { describe, expect, it } from "vitest";

import type { GraphDoc } from "./api";
import { TwinGraph } from "./twin-graph";
import { ViewTree, groupKey, twinKey } from "./view-tree";

/** A small smart city: `neighbourhoods` × `poles`, relationships both ways as worlds make them. */
export function city(neighbourhoods: number, poles: number): GraphDoc {
  const twinInstances: GraphDoc["twinInstances"] = [];
  const cityRels = [];
  for (let n = 1; n <= neighbourhoods; n++) {
    const nb = `s4city-city-neighborhood-nb${String(n).padStart(3, "0")}`;
    cityRels.push({ name: "refNeighborhood", interface: "s4city-city-neighborhood", instance: nb });
    const nbRels = [{ name: "refCity", interface: "s4city-city-city", instance: "s4city-city-city" }];
    for (let p = 1; p <= poles; p++) {
      const pole = `city-pole-nb${String(n).padStart(3, "0")}-p${String(p).padStart(5, "0")}`;
      const light = `ngsi-ld-city-streetlight-nb${String(n).padStart(3, "0")}-p${String(p).padStart(5, "0")}`;
      nbRels.push({ name: "refCityPoles", interface: "city-pole", instance: pole });
      twinInstances.push({ name: pole, interface: "city-pole", relationships: [
        { name: "refNeighborhood", interface: "s4city-city-neighborhood", instance: nb },
        { name: "refStreetlight", interface: "ngsi-ld-city-streetlight", instance: light },
      ] });
      twinInstances.push({ name: light, interface: "ngsi-ld-city-streetlight", relationships: [
        { name: "citypole", interface: "city-pole", instance: pole },
      ] });
    }
    twinInstances.push({ name: nb, interface: "s4city-city-neighborhood", relationships: nbRels });
  }
  twinInstances.push({ name: "s4city-city-city", interface: "s4city-city-city", relationships: cityRels });
  return { twinInstances };
}

describe("TwinGraph", () => {
  it("infers containment from the rarest interface down, whatever the edges' direction", () => {
    const graph = new TwinGraph(city(2, 3));
    expect([...graph.roots.keys()]).toEqual(["s4city-city-city"]);
    const pole = graph.twins.get("city-pole-nb002-p00003")!;
    expect(pole.parent).toBe("s4city-city-neighborhood-nb002");
    expect(graph.twins.get("ngsi-ld-city-streetlight-nb002-p00003")!.parent).toBe(pole.name);
    expect(graph.path(pole.name)).toEqual(["s4city-city-city", "s4city-city-neighborhood-nb002", pole.name]);
    expect(graph.descendants("s4city-city-city")).toBe(2 + 2 * 3 * 2);
    expect(graph.twins.get("s4city-city-city")!.incoming).toHaveLength(2);
  });

  it("roots a one-neighbourhood city at the city, not an equally rare nested twin", () => {
    const doc = city(1, 2);
    doc.twinInstances.push(
      { name: "ngsi-ld-city-offstreetparking-nb001-ofp0001", interface: "ngsi-ld-city-offstreetparking", relationships: [
        { name: "refNeighborhood", interface: "s4city-city-neighborhood", instance: "s4city-city-neighborhood-nb001" }] },
    );
    const graph = new TwinGraph(doc);
    expect([...graph.roots.values()]).toEqual([["s4city-city-city"]]);
    expect(graph.twins.get("ngsi-ld-city-offstreetparking-nb001-ofp0001")!.parent).toBe("s4city-city-neighborhood-nb001");
  });

  it("ranks exact, prefix, part-prefix, then substring matches", () => {
    const graph = new TwinGraph(city(2, 12));
    expect(graph.search("city-pole", 3)).toEqual(["city-pole-nb001-p00001", "city-pole-nb001-p00002", "city-pole-nb001-p00003"]);
    expect(graph.search("s4city-city-city")[0]).toBe("s4city-city-city");
    expect(graph.search("p00012", 5)).toEqual(["city-pole-nb001-p00012", "city-pole-nb002-p00012", "ngsi-ld-city-streetlight-nb001-p00012", "ngsi-ld-city-streetlight-nb002-p00012"]);
    expect(graph.search("  ")).toEqual([]);
    expect(graph.search("no-such")).toEqual([]);
  });

  it("counts relationships between interfaces", () => {
    const links = new TwinGraph(city(2, 3)).interfaceLinks();
    const poles = links.find((l) => l.relationship === "refCityPoles")!;
    expect(poles).toEqual({ from: "s4city-city-neighborhood", to: "city-pole", relationship: "refCityPoles", count: 6 });
  });

  it("searches 12,000 twins well within a frame", () => {
    const graph = new TwinGraph(city(20, 300));
    expect(graph.size).toBe(20 * 600 + 21);
    const started = performance.now();
    expect(graph.search("city-pole", 12)).toHaveLength(12);
    // A bound for runaway complexity, not a benchmark: the benchmark is in docs/benchmarks.md.
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("ViewTree", () => {
  it("groups children by interface and keeps the first view small", () => {
    const tree = new ViewTree(new TwinGraph(city(20, 50)));
    tree.expandInitially(80);
    const nodes = tree.visible();
    expect(nodes.length).toBeLessThanOrEqual(80);
    expect(nodes[0]).toMatchObject({ key: twinKey("s4city-city-city"), expanded: true });
    expect(nodes.filter((n) => n.kind === "twin" && n.interface === "s4city-city-neighborhood")).toHaveLength(20);
    const poles = nodes.find((n) => n.key === groupKey("s4city-city-neighborhood-nb007", "city-pole"))!;
    expect(poles).toMatchObject({ kind: "group", label: "city-pole ×50", expanded: false });
  });

  it("reveals a twin deep in a large group and pages the rest", () => {
    const tree = new ViewTree(new TwinGraph(city(2, 150)));
    tree.reveal("ngsi-ld-city-streetlight-nb002-p00140");
    const nodes = tree.visible();
    expect(nodes.some((n) => n.twin === "ngsi-ld-city-streetlight-nb002-p00140")).toBe(true);
    const more = nodes.find((n) => n.kind === "more")!;
    expect(more.members).toHaveLength(150 - 60 - 1);
    tree.toggle(more.key);
    expect(tree.visible().find((n) => n.kind === "more")!.members).toHaveLength(150 - 120 - 1);
  });

  it("collapses what it expanded", () => {
    const tree = new ViewTree(new TwinGraph(city(1, 3)));
    const before = tree.visible().length;
    tree.toggle(twinKey("s4city-city-city"));
    expect(tree.visible().length).toBeGreaterThan(before);
    tree.toggle(twinKey("s4city-city-city"));
    expect(tree.visible().length).toBe(before);
  });
});
