// JSON states as rows of (path, value): nested objects become `a.b` paths, so a state reads as
// a table and numeric members can be charted.

export type Row = [path: string, value: unknown];

/** Leaf members of `value` with their dotted paths, arrays kept whole. */
export function flatten(value: Record<string, unknown>, prefix = ""): Row[] {
  const rows: Row[] = [];
  for (const [key, member] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (member !== null && typeof member === "object" && !Array.isArray(member)) {
      const nested = flatten(member as Record<string, unknown>, path);
      if (nested.length === 0) rows.push([path, member]);
      else rows.push(...nested);
    } else {
      rows.push([path, member]);
    }
  }
  return rows;
}

/** The paths whose value is a number in at least one of `objects`, sorted. */
export function numericPaths(objects: Record<string, unknown>[]): string[] {
  const paths = new Set<string>();
  for (const object of objects) for (const [path, value] of flatten(object)) if (typeof value === "number") paths.add(path);
  return [...paths].sort();
}

/** The member at a dotted `path`, or undefined. */
export function at(object: Record<string, unknown>, path: string): unknown {
  let current: unknown = object;
  for (const key of path.split(".")) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
