// Small shared pieces of the memory page: formatting, the kinds' colours, and the
// search snippet read as text (never as HTML).

export const MEMORY = "/api/v1/memory";

export const KIND_COLOURS = {
  observation: "#0b5cad",
  fact: "#1b6e3a",
  reflection: "#7b3fa0",
  plan: "#b35100",
};
export const ENTITY_COLOUR = "#7b8794";
export const KINDS = Object.keys(KIND_COLOURS);

export function agentPath(agent) {
  return `${MEMORY}/agents/${encodeURIComponent(agent)}`;
}

export function day(value) {
  if (!value) return "";
  return new Date(value).toISOString().slice(0, 10);
}

export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

/** The memory's uuid of a graph node id (`memory:<uuid>`), else null. */
export function memoryOf(nodeId) {
  return nodeId && nodeId.startsWith("memory:") ? nodeId.slice("memory:".length) : null;
}

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", "#x27": "'", "#39": "'" };

function unescape(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, name) => {
    const known = ENTITIES[name.toLowerCase()];
    if (known) return known;
    if (name[0] === "#") {
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return whole;
  });
}

/**
 * The API's snippet is HTML-escaped text whose only markup is `<mark>`…`</mark>`
 * (projections/memory_search.safe_snippet). It is read here as data: split on the two
 * marks, the escapes decoded back to text, and React renders the parts as text nodes.
 * Whatever a memory says, nothing of it becomes markup. Returns [{text, hit}].
 */
export function snippetParts(snippet) {
  const parts = [];
  let hit = false;
  for (const piece of String(snippet || "").split(/(<mark>|<\/mark>)/)) {
    if (piece === "<mark>") hit = true;
    else if (piece === "</mark>") hit = false;
    else if (piece) parts.push({ text: unescape(piece), hit });
  }
  return parts;
}
