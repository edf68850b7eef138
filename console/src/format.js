/**
 * How the console writes an instant: always UTC, as "2026-03-02 09:00:00 UTC", on every
 * page (the charts' axes are UTC too), so two times on the screen compare at a glance and
 * match what the API and the audit log say. `short` drops the date when the instant is
 * today (UTC): for dense tables of recent jobs. No value is "—"; text that is not an
 * instant is shown as it came.
 */
export function when(value, short = false) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const iso = date.toISOString();
  if (short && iso.slice(0, 10) === new Date().toISOString().slice(0, 10)) {
    return `${iso.slice(11, 19)} UTC`;
  }
  return `${iso.slice(0, 19).replace("T", " ")} UTC`;
}
