// Colours of nodes: by interface, or by a state field (a sequential scale for numbers, a
// categorical palette for other values). Labels get black or white text, whichever contrasts
// more with the fill (WCAG relative luminance).

/** Okabe–Ito and Tableau-like hues that stay distinguishable for colour-blind readers. */
const CATEGORICAL = [
  "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#7f7f7f",
  "#8c564b", "#17becf", "#bcbd22", "#9467bd",
];

/** Viridis, sampled: readable in grey scale and for colour-blind readers. */
const SEQUENTIAL = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];

export const MISSING = "#d0d0d0";

export function categorical(index: number): string {
  return CATEGORICAL[index % CATEGORICAL.length];
}

/** A stable colour per string (interfaces keep their colour between reloads). */
export function colourOf(key: string): string {
  let hash = 0;
  for (let i = 0; i < key.length; i++) hash = (hash * 31 + key.charCodeAt(i)) >>> 0;
  return categorical(hash);
}

function parse(hex: string): [number, number, number] {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function hex([r, g, b]: [number, number, number]): string {
  return `#${[r, g, b].map((c) => Math.round(c).toString(16).padStart(2, "0")).join("")}`;
}

/** The sequential colour of `t` in [0, 1]. */
export function sequential(t: number): string {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
  const scaled = clamped * (SEQUENTIAL.length - 1);
  const i = Math.min(SEQUENTIAL.length - 2, Math.floor(scaled));
  const a = parse(SEQUENTIAL[i]);
  const b = parse(SEQUENTIAL[i + 1]);
  const f = scaled - i;
  return hex([0, 1, 2].map((k) => a[k] + (b[k] - a[k]) * f) as [number, number, number]);
}

function luminance(colour: string): number {
  const [r, g, b] = parse(colour).map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio of two colours. */
export function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

/** Black or white, whichever reads better on `fill`. */
export function textOn(fill: string): string {
  return contrast(fill, "#000000") >= contrast(fill, "#ffffff") ? "#000000" : "#ffffff";
}

/** How values of one field map to colours, and the legend saying so. */
export interface Scale {
  colour(value: unknown): string;
  legend: { label: string; colour: string }[];
}

/** A scale for `values`: sequential over their range when all are numbers, else categorical. */
export function scaleFor(values: unknown[]): Scale {
  const present = values.filter((v) => v !== undefined && v !== null);
  const numbers = present.filter((v): v is number => typeof v === "number");
  if (present.length > 0 && numbers.length === present.length) {
    const min = Math.min(...numbers);
    const max = Math.max(...numbers);
    const span = max - min || 1;
    const at = (v: number) => sequential((v - min) / span);
    const steps = min === max ? [min] : [0, 0.25, 0.5, 0.75, 1].map((t) => min + t * span);
    return {
      colour: (v) => (typeof v === "number" ? at(v) : MISSING),
      legend: steps.map((v) => ({ label: formatNumber(v), colour: at(v) })),
    };
  }
  const categories = [...new Set(present.map((v) => display(v)))].sort();
  const index = new Map(categories.map((c, i) => [c, i]));
  return {
    colour: (v) => (v === undefined || v === null ? MISSING : categorical(index.get(display(v)) ?? 0)),
    legend: categories.slice(0, 12).map((c, i) => ({ label: c, colour: categorical(i) })),
  };
}

export function display(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function formatNumber(value: number): string {
  return Math.abs(value) >= 1000 || Number.isInteger(value) ? String(Math.round(value * 100) / 100) : value.toPrecision(3);
}
