// Small helpers shared by the prediction page's components.

/** Colours of the models, in the order they are listed (contrast ≥ 4.5:1 on white). */
export const MODEL_COLOURS = ["#0b5cad", "#b54708", "#1b6e3a", "#7b2cbf", "#a3123a", "#2f5f8a"];

export function colourOf(models, model) {
  const i = models.indexOf(model);
  return MODEL_COLOURS[(i < 0 ? 0 : i) % MODEL_COLOURS.length];
}

/** `#rrggbb` with an alpha, for band fills. */
export function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

/** An ISO date (`2018-12-31`) as unix seconds at midnight UTC (uPlot's time x). */
export function seconds(iso) {
  return Date.parse(`${iso}T00:00:00Z`) / 1000;
}

const fixed = (digits) =>
  new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const F2 = fixed(2);
const F3 = fixed(3);
const F1 = fixed(1);

/** A number for a table cell: `—` when missing. */
export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (digits === 1) return F1.format(value);
  if (digits === 3) return F3.format(value);
  if (digits === 2) return F2.format(value);
  return fixed(digits).format(value);
}

/** A share (0–1) as a percentage. */
export function pct(value, digits = 1) {
  if (value === null || value === undefined) return "—";
  return `${num(value * 100, digits)}%`;
}

/** Band level keys ("50", "97.5") sorted from the widest down. */
export function levelKeys(bands) {
  return Object.keys(bands || {}).sort((a, b) => Number(b) - Number(a));
}
