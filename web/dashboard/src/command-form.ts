// Forms generated from a command's DTDL request schema: one editor per schema node (a checkbox,
// a number or text field, a select of enum values, a fieldset per object, rows for arrays and
// maps), which reads back a JSON value or says which field is wrong.

import { h, uid } from "./dom";
import type { Primitive, Schema } from "./model-types";
import { text } from "./model-types";

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

const INTEGERS: Partial<Record<Primitive, [number, number]>> = {
  byte: [-128, 127],
  short: [-32768, 32767],
  integer: [-2147483648, 2147483647],
  long: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  unsignedByte: [0, 255],
  unsignedShort: [0, 65535],
  unsignedInteger: [0, 4294967295],
  unsignedLong: [0, Number.MAX_SAFE_INTEGER],
};

/** A raw field text as a value of `primitive`; empty text is `undefined` (field left out). */
export function parsePrimitive(primitive: Primitive, raw: string): Parsed {
  const value = raw.trim();
  if (value === "") return { ok: true, value: undefined };
  const range = INTEGERS[primitive];
  if (range) {
    if (!/^[+-]?\d+$/.test(value)) return { ok: false, error: `expected a whole number (${primitive})` };
    const n = Number(value);
    if (n < range[0] || n > range[1]) return { ok: false, error: `${n} is outside ${primitive}'s range ${range[0]}…${range[1]}` };
    return { ok: true, value: n };
  }
  switch (primitive) {
    case "double":
    case "float":
    case "decimal": {
      const n = Number(value);
      return Number.isFinite(n) ? { ok: true, value: n } : { ok: false, error: `expected a number (${primitive})` };
    }
    case "boolean":
      return value === "true" || value === "false"
        ? { ok: true, value: value === "true" }
        : { ok: false, error: "expected true or false" };
    case "dateTime": {
      const date = new Date(value);
      return Number.isNaN(date.getTime()) ? { ok: false, error: "expected a date and time" } : { ok: true, value: date.toISOString() };
    }
    case "uuid":
      return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
        ? { ok: true, value }
        : { ok: false, error: "expected a UUID" };
    default:
      return { ok: true, value };
  }
}

/** An editor of one schema node. */
export interface Editor {
  element: HTMLElement;
  /** The value (undefined = left empty), or the first problem, naming the field. */
  read(): Parsed;
}

function inputType(primitive: Primitive): string {
  if (primitive in INTEGERS || primitive === "double" || primitive === "float" || primitive === "decimal") return "number";
  if (primitive === "date") return "date";
  if (primitive === "time") return "time";
  if (primitive === "dateTime") return "datetime-local";
  return "text";
}

function labelled(label: string, control: HTMLElement, id: string, hint?: string): HTMLElement {
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", {}, hint) : null);
}

function primitiveEditor(primitive: Primitive, label: string, path: string): Editor {
  const id = uid("cmd");
  if (primitive === "boolean") {
    const box = h("input", { type: "checkbox", id, name: path });
    return {
      element: h("div", { class: "field checkbox" }, box, h("label", { for: id }, label)),
      read: () => ({ ok: true, value: box.checked }),
    };
  }
  const input = h("input", {
    type: inputType(primitive), id, name: path, step: primitive in INTEGERS ? "1" : "any",
    placeholder: primitive === "duration" ? "PT5M" : primitive,
  });
  return {
    element: labelled(label, input, id, primitive),
    read: () => named(path, parsePrimitive(primitive, input.value)),
  };
}

function named(path: string, parsed: Parsed): Parsed {
  return parsed.ok ? parsed : { ok: false, error: `${path}: ${parsed.error}` };
}

function enumEditor(schema: Extract<Schema, { type: "enum" }>, label: string, path: string): Editor {
  const id = uid("cmd");
  const select = h(
    "select", { id, name: path },
    h("option", { value: "" }, "—"),
    schema.enumValues.map((v, i) => h("option", { value: String(i) }, `${text(v.displayName) ?? v.name} (${v.enumValue})`)),
  );
  return {
    element: labelled(label, select, id, `enum of ${schema.valueSchema}`),
    read: () => ({ ok: true, value: select.value === "" ? undefined : schema.enumValues[Number(select.value)].enumValue }),
  };
}

function objectEditor(schema: Extract<Schema, { type: "object" }>, label: string, path: string): Editor {
  const fields = schema.fields.map((f) => ({
    name: f.name,
    editor: editorFor(f.schema, text(f.displayName) ?? f.name, path ? `${path}.${f.name}` : f.name),
  }));
  return {
    element: h("fieldset", {}, h("legend", {}, label), fields.map((f) => f.editor.element)),
    read: () => {
      const value: Record<string, unknown> = {};
      for (const field of fields) {
        const parsed = field.editor.read();
        if (!parsed.ok) return parsed;
        if (parsed.value !== undefined) value[field.name] = parsed.value;
      }
      return { ok: true, value };
    },
  };
}

/** Rows added and removed by the user: arrays (element editors) and maps (key + value). */
function rowsEditor(label: string, path: string, makeRow: (index: number) => Editor): Editor {
  const rows: { editor: Editor; row: HTMLElement }[] = [];
  const list = h("div", { class: "rows" });
  const add = h("button", { type: "button" }, `Add to ${label}`);
  add.addEventListener("click", () => {
    const editor = makeRow(rows.length);
    const remove = h("button", { type: "button", "aria-label": `Remove from ${label}` }, "Remove");
    const row = h("div", { class: "row" }, editor.element, remove);
    const entry = { editor, row };
    remove.addEventListener("click", () => {
      rows.splice(rows.indexOf(entry), 1);
      row.remove();
    });
    rows.push(entry);
    list.append(row);
  });
  return {
    element: h("fieldset", {}, h("legend", {}, label), list, add),
    read: () => {
      const values: unknown[] = [];
      for (const { editor } of rows) {
        const parsed = editor.read();
        if (!parsed.ok) return named(path, parsed);
        values.push(parsed.value);
      }
      return { ok: true, value: values };
    },
  };
}

function mapEditor(schema: Extract<Schema, { type: "map" }>, label: string, path: string): Editor {
  const rows = rowsEditor(label, path, (i) => {
    const key = primitiveEditor("string", schema.mapKey.name, `${path}[${i}].key`);
    const value = editorFor(schema.mapValue.schema, schema.mapValue.name, `${path}[${i}].value`);
    return {
      element: h("div", { class: "pair" }, key.element, value.element),
      read: () => {
        const k = key.read();
        const v = value.read();
        if (!k.ok) return k;
        if (!v.ok) return v;
        if (!k.value) return { ok: false, error: `${path}[${i}]: the key is empty` };
        return { ok: true, value: [k.value, v.value] };
      },
    };
  });
  return {
    element: rows.element,
    read: () => {
      const parsed = rows.read();
      return parsed.ok ? { ok: true, value: Object.fromEntries(parsed.value as [string, unknown][]) } : parsed;
    },
  };
}

function jsonEditor(label: string, path: string): Editor {
  const id = uid("cmd");
  const area = h("textarea", { id, name: path, rows: 3 });
  return {
    element: labelled(label, area, id, "JSON"),
    read: () => {
      if (!area.value.trim()) return { ok: true, value: undefined };
      try {
        return { ok: true, value: JSON.parse(area.value) };
      } catch (err) {
        return { ok: false, error: `${path}: not JSON (${(err as Error).message})` };
      }
    },
  };
}

/** The editor of `schema`, labelled `label`; `path` names the field in errors (`a.b[2]`). */
export function editorFor(schema: Schema, label: string, path: string): Editor {
  switch (schema.type) {
    case "primitive":
      return primitiveEditor(schema.primitive, label, path);
    case "enum":
      return enumEditor(schema, label, path);
    case "object":
      return objectEditor(schema, label, path);
    case "array":
      return rowsEditor(label, path, (i) => editorFor(schema.elementSchema, `${label} ${i + 1}`, `${path}[${i}]`));
    case "map":
      return mapEditor(schema, label, path);
    case "ref":
      return jsonEditor(label, path);
  }
}
