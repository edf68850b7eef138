// What a page may offer the signed-in key (src/may.js), before and after /me answers.
import { test } from "node:test";
import assert from "node:assert/strict";

import { may } from "../src/may.js";

const viewer = { principal: "ann", roles: ["viewer"], may: { read: true, write: false } };

test("while /me has not answered, it is not known yet (commands stay disabled)", () => {
  assert.equal(may(undefined, "write"), null);
  assert.equal(may(undefined, "read"), null);
});

test("once /me answered, its `may` decides; a permission it does not name is refused", () => {
  assert.equal(may(viewer, "read"), true);
  assert.equal(may(viewer, "write"), false);
  assert.equal(may(viewer, "admin"), false);
  assert.equal(may({ principal: "x", roles: [] }, "read"), false);
});

test("when /me could not be asked, every command is offered and the API decides", () => {
  assert.equal(may(null, "write"), true);
});
