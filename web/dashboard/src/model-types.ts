// The DTDL model as `GET /api/v1/models` serves it: ktwin-dtdl's resolved interfaces (inherited
// contents flattened in, schemas inlined) with the ktwin interface name each one has, and the
// project's validation findings.

export type Localized = Record<string, string>;

export type Primitive =
  | "boolean" | "byte" | "bytes" | "date" | "dateTime" | "decimal" | "double" | "duration"
  | "float" | "integer" | "long" | "short" | "string" | "time" | "unsignedByte"
  | "unsignedInteger" | "unsignedLong" | "unsignedShort" | "uuid";

export interface NamedSchema {
  name: string;
  displayName?: Localized;
  description?: Localized;
  schema: Schema;
}

export interface EnumValue {
  name: string;
  displayName?: Localized;
  enumValue: string | number;
}

export type Schema =
  | { type: "primitive"; primitive: Primitive }
  | { type: "array"; id: string; elementSchema: Schema }
  | { type: "enum"; id: string; valueSchema: Primitive; enumValues: EnumValue[] }
  | { type: "map"; id: string; mapKey: NamedSchema; mapValue: NamedSchema }
  | { type: "object"; id: string; fields: NamedSchema[] }
  | { type: "ref"; id: string };

export interface CommandPayload {
  name: string;
  displayName?: Localized;
  description?: Localized;
  schema: Schema;
  nullable: boolean;
}

interface ContentBase {
  name: string;
  id: string;
  origin: string;
  displayName?: Localized;
  description?: Localized;
  supplementalTypes?: string[];
  supplementalProperties?: Record<string, unknown>;
}

export type Content = ContentBase &
  (
    | { kind: "Property"; schema: Schema; writable: boolean }
    | { kind: "Telemetry"; schema: Schema }
    | { kind: "Command"; request?: CommandPayload; response?: CommandPayload; commandType?: string }
    | {
        kind: "Relationship";
        target?: string;
        minMultiplicity?: number;
        maxMultiplicity?: number;
        writable: boolean;
      }
    | { kind: "Component"; schema: string }
  );

export interface ModelInterface {
  /** The ktwin interface name (`city-pole`): event types, topics and the graph use it. */
  name: string;
  id: string;
  /** The file that defines it, as diagnostics name documents. */
  document?: string;
  dtdlVersion: number;
  displayName?: Localized;
  description?: Localized;
  extends?: string[];
  contents: Content[];
}

export interface Diagnostic {
  severity: "warning" | "error";
  id: string;
  document: string;
  pointer: string;
  value?: string;
  /** The element the finding is about (its DTMI, written or derived). */
  primaryId?: string;
  message: string;
}

export interface ModelDoc {
  interfaces: ModelInterface[];
  diagnostics: Diagnostic[];
}

/** English text of a localized string, else any language's, else undefined. */
export function text(value: Localized | undefined): string | undefined {
  if (!value) return undefined;
  return value.en ?? value["en-US"] ?? Object.values(value)[0];
}

/** One line describing a schema, e.g. `double`, `enum<string> ok|off`, `object{aqiLevel}`. */
export function schemaLabel(schema: Schema): string {
  switch (schema.type) {
    case "primitive":
      return schema.primitive;
    case "array":
      return `array<${schemaLabel(schema.elementSchema)}>`;
    case "enum":
      return `enum<${schema.valueSchema}> ${schema.enumValues.map((v) => v.enumValue).join("|")}`;
    case "map":
      return `map<${schemaLabel(schema.mapKey.schema)}, ${schemaLabel(schema.mapValue.schema)}>`;
    case "object":
      return `object{${schema.fields.map((f) => f.name).join(", ")}}`;
    case "ref":
      return `ref ${schema.id}`;
  }
}
