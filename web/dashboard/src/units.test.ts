import { describe, expect, it } from "vitest";

import { contrast, scaleFor, sequential, textOn, colourOf, MISSING } from "./colour";
import { parsePrimitive } from "./command-form";
import { flatten, numericPaths, at } from "./flatten";
import { summary } from "./graph-colours";
import { interfaceOfType } from "./live";
import { SseParser } from "./sse";
import { shortLabel } from "./graph-view";
import { seriesOf } from "./chart";

describe("colours", () => {
  it("labels every palette colour with text of at least 4.5:1 contrast", () => {
    const fills = [...Array(12).keys()].map((i) => colourOf(`iface-${i}`));
    for (let t = 0; t <= 1; t += 0.05) fills.push(sequential(t));
    for (const fill of fills) expect(contrast(fill, textOn(fill))).toBeGreaterThanOrEqual(4.5);
  });

  it("scales numbers sequentially and other values by category", () => {
    const numbers = scaleFor([1, 5, 9, undefined]);
    expect(numbers.colour(1)).toBe(sequential(0));
    expect(numbers.colour(9)).toBe(sequential(1));
    expect(numbers.colour(undefined)).toBe(MISSING);
    const words = scaleFor(["GOOD", "MODERATE", "GOOD"]);
    expect(words.legend.map((l) => l.label)).toEqual(["GOOD", "MODERATE"]);
    expect(words.colour("GOOD")).not.toBe(words.colour("MODERATE"));
  });

  it("summarises a group by mean or most common value", () => {
    expect(summary([1, 2, 3, undefined])).toBe(2);
    expect(summary(["a", "b", "b"])).toBe("b");
    expect(summary([undefined, null])).toBeUndefined();
  });
});

describe("command form values", () => {
  it("parses primitives and names what is wrong", () => {
    expect(parsePrimitive("integer", "42")).toEqual({ ok: true, value: 42 });
    expect(parsePrimitive("integer", "4.2")).toMatchObject({ ok: false });
    expect(parsePrimitive("unsignedByte", "256")).toEqual({ ok: false, error: "256 is outside unsignedByte's range 0…255" });
    expect(parsePrimitive("double", "2.5e3")).toEqual({ ok: true, value: 2500 });
    expect(parsePrimitive("double", "abc")).toMatchObject({ ok: false });
    expect(parsePrimitive("string", " x ")).toEqual({ ok: true, value: "x" });
    expect(parsePrimitive("string", "")).toEqual({ ok: true, value: undefined });
    expect(parsePrimitive("dateTime", "2024-05-01T10:00:00Z")).toEqual({ ok: true, value: "2024-05-01T10:00:00.000Z" });
    expect(parsePrimitive("uuid", "nope")).toMatchObject({ ok: false });
  });
});

describe("states", () => {
  it("flattens nested members into dotted paths", () => {
    const state = { a: 1, b: { c: "x", d: { e: 2 } }, f: [1, 2], g: {} };
    expect(flatten(state)).toEqual([["a", 1], ["b.c", "x"], ["b.d.e", 2], ["f", [1, 2]], ["g", {}]]);
    expect(numericPaths([state, { z: 3 }])).toEqual(["a", "b.d.e", "z"]);
    expect(at(state, "b.d.e")).toBe(2);
    expect(at(state, "b.x.y")).toBeUndefined();
  });

  it("charts only events that set a chosen number", () => {
    const event = (time: string, data: Record<string, unknown>) => ({ id: time, time, source: "s", type: "t", instanceId: "s", interfaceId: "i", eventData: data });
    const data = seriesOf([event("2024-01-01T00:00:00Z", { a: 1 }), event("2024-01-01T00:00:01Z", { b: "x" }), event("2024-01-01T00:00:02Z", { a: 3, c: 4 })], ["a", "c"]);
    expect(data).toEqual([[1704067200, 1704067202], [1, 3], [null, 4]]);
  });
});

describe("live stream", () => {
  it("parses server-sent events split anywhere, keeping the last id", () => {
    const parser = new SseParser();
    const text = ": hello\n\nid: 7\nevent: cloudevent\ndata: {\"a\":\ndata: 1}\n\r\nid: 8\r\ndata: x\r\n\r\nevent: gap\ndata: {\"missed\":3}\n\n";
    const messages = [];
    for (let i = 0; i < text.length; i += 5) messages.push(...parser.push(text.slice(i, i + 5)));
    expect(messages).toEqual([
      { id: "7", event: "cloudevent", data: "{\"a\":\n1}" },
      { id: "8", event: "message", data: "x" },
      { id: "8", event: "gap", data: "{\"missed\":3}" },
    ]);
  });

  it("names the interface of an event type", () => {
    expect(interfaceOfType("ktwin.real.city-pole")).toBe("city-pole");
    expect(interfaceOfType("ktwin.command.city-pole.updateairqualityindex")).toBe("city-pole");
  });

  it("labels twins without their interface prefix", () => {
    expect(shortLabel("city-pole-nb001-p00001", "city-pole")).toBe("nb001-p00001");
    expect(shortLabel("other", "city-pole")).toBe("other");
  });
});
