// Small formatting helpers of the training page.

export const TERMINAL = ["completed", "early_stopped", "stopped", "failed"];
export const ACTIVE = ["queued", "running"];
export const METRICS = ["loss", "val_loss", "accuracy", "val_accuracy"];

// distinct, readable on white (WCAG AA against #fff for text use)
export const PALETTE = ["#0b5cad", "#b3261e", "#1b6e3a", "#8a5300", "#6b3fa0", "#00707a", "#52606d", "#a3195b", "#3d5a80", "#6b5a00"];

export function shortId(id) {
  return String(id || "").slice(0, 8);
}

export function runLabel(job) {
  if (!job) return "";
  return `${job.model_name} · ${shortId(job.id)}`;
}

export function fixed(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(2);
  return value.toFixed(digits);
}

export function percent(value) {
  if (value === null || value === undefined) return "—";
  return `${(value * 100).toFixed(1)}%`;
}

export function metricText(name, value) {
  return name.includes("accuracy") ? percent(value) : fixed(value);
}

export function duration(from, to) {
  if (!from) return "—";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (ms < 0) return "—";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export const STATUS_CLASS = {
  queued: "",
  running: "run",
  completed: "ok",
  early_stopped: "ok",
  stopped: "warn",
  failed: "bad",
};

export function statusText(status) {
  return String(status || "").replace("_", " ");
}

/** The API's field errors of a problem as { field: message }. */
export function fieldErrors(error) {
  const out = {};
  const errors = error?.problem?.errors;
  if (Array.isArray(errors)) for (const e of errors) if (e.field) out[e.field] = out[e.field] ? `${out[e.field]}; ${e.message}` : e.message;
  return out;
}
