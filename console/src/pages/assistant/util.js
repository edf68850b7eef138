// Small helpers shared by the assistant page's components.
import { ApiError } from "../../api.js";

export const BASE = "/api/v1/ai-assistant";

/** The fields a 400 names, as { field: message }, for fields under `prefix` (stripped). */
export function fieldErrors(error, prefix = "") {
  const out = {};
  if (!(error instanceof ApiError) || !Array.isArray(error.problem?.errors)) return out;
  for (const e of error.problem.errors) {
    if (!e.field) continue;
    if (prefix && !e.field.startsWith(prefix)) continue;
    const name = e.field.slice(prefix.length);
    out[name] = out[name] ? `${out[name]}; ${e.message}` : e.message;
  }
  return out;
}

/** Every `{{ name }}` a template uses, in order of first use (the API's grammar). */
export function variablesOf(...templates) {
  const seen = [];
  for (const text of templates) {
    const re = /(\\*)\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}/g;
    let m;
    while ((m = re.exec(text || ""))) {
      if (m[1].length % 2 === 1) continue; // an escaped \{{ is literal text
      if (!seen.includes(m[2])) seen.push(m[2]);
    }
  }
  return seen;
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

export function pct(value) {
  if (value === null || value === undefined) return "—";
  return `${(value * 100).toFixed(1)}%`;
}
