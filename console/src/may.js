/**
 * Whether the signed-in key may do `permission`, from what `GET /api/v1/me` said of it.
 *
 * `caller` is `undefined` while `/me` has not answered (right after a reload): the answer
 * is `null`, "not known yet", and commands stay disabled until it is, so a key that may
 * not deploy never sees an enabled Deploy. `null` means `/me` could not be asked (any
 * failure but a 401, which signs out): every command is enabled and the API, which
 * checks every request on its own, refuses with a problem the page shows.
 */
export function may(caller, permission) {
  if (caller === undefined) return null;
  if (caller === null) return true;
  return Boolean(caller.may?.[permission]);
}
