import { useState } from "react";
import { ApiError, clearKey, get, setKey } from "../api.js";
import Problem from "./Problem.jsx";

/** Asks for the API key once; it is kept in this tab's session storage only. */
export default function KeyGate({ onKey }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setKey(value.trim());
    try {
      // any valid key may ask who it is; a 401 means the key is unknown or revoked
      const { data: caller } = await get("/api/v1/me");
      onKey(value.trim(), caller);
    } catch (err) {
      clearKey();
      setError(err instanceof ApiError ? err : new ApiError(0, { title: String(err) }));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="gate" aria-labelledby="gate-title">
      <h1 id="gate-title">Sign in with an API key</h1>
      <p>
        The console talks to the aimm API with your key. <code>aimm dev</code> prints an admin key
        on its first start; <code>aimm keys create</code> makes others. The key stays in this tab
        only.
      </p>
      <form onSubmit={submit}>
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          required
          value={value}
          onChange={(e) => setValue(e.target.value)}
        />
        <button type="submit" disabled={busy || !value.trim()}>
          Sign in
        </button>
      </form>
      <Problem error={error} />
    </section>
  );
}
