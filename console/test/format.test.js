// How every page writes an instant (src/format.js): UTC whatever the machine's zone.
import { test } from "node:test";
import assert from "node:assert/strict";

process.env.TZ = "America/New_York"; // a zone far from UTC: the output must not move

const { when } = await import("../src/format.js");

test("an instant is written in UTC to the second, whatever zone it came in", () => {
  assert.equal(when("2026-03-02T09:00:00Z"), "2026-03-02 09:00:00 UTC");
  assert.equal(when("2026-03-02T09:00:00.987654+00:00"), "2026-03-02 09:00:00 UTC");
  assert.equal(when("2026-03-02T04:00:00-05:00"), "2026-03-02 09:00:00 UTC");
  assert.equal(when("2026-03-01T23:30:00-05:00"), "2026-03-02 04:30:00 UTC");
});

test("no value is a dash; text that is no instant is shown as it came", () => {
  assert.equal(when(null), "—");
  assert.equal(when(undefined), "—");
  assert.equal(when(""), "—");
  assert.equal(when("soon"), "soon");
});

test("short drops the date only for today (UTC)", () => {
  const now = new Date();
  const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), 0, 0, 1));
  assert.equal(when(today.toISOString(), true), "00:00:01 UTC");
  assert.equal(when("2020-01-02T03:04:05Z", true), "2020-01-02 03:04:05 UTC");
  assert.equal(when("2020-01-02T03:04:05Z"), "2020-01-02 03:04:05 UTC");
});
