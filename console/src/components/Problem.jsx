import { ApiError } from "../api.js";

const ADVICE = {
  400: "The request was refused as malformed; correct the fields named below.",
  401: "The API key is unknown or revoked; sign in again.",
  403: "Your key's role may not do this; ask an admin for a key with the role.",
  404: "It is not there (any more); reload the page.",
  408: "The server waited too long for the request; try again.",
  413: "The request is too large.",
  422: "The request was understood but refused by a rule of the system.",
  429: "Too many requests; wait a moment and try again.",
  503: "The service is unavailable for a moment; try again shortly.",
};

/**
 * An API refusal shown as a person can act on it: what happened (the problem's detail),
 * which fields, and what to do. A 409 of a stale version (its body names the
 * `current_version`) says someone else changed the thing and offers `onReload`; another
 * 409 is a rule of the current state and is shown in the API's words.
 */
export default function Problem({ error, onReload, onDismiss }) {
  if (!error) return null;
  const api = error instanceof ApiError;
  const problem = api ? error.problem : { title: "The server could not be reached", detail: String(error.message || error) };
  const status = api ? error.status : 0;
  // a stale If-Match names the current version; other 409s are rules of the current
  // state (an experiment already running, a gate not passed) and say so in their detail
  const conflict = status === 409 && problem.current_version !== undefined;
  const stateRule = status === 409 && !conflict;
  return (
    <div className="problem" role="alert" data-status={status || undefined}>
      <p className="problem-title">
        <strong>
          {conflict
            ? "Someone else changed this in the meantime."
            : stateRule
              ? `Refused by the current state: ${problem.title || "Conflict"}`
              : problem.title || "Refused"}
        </strong>
        {status ? <span className="status"> ({status})</span> : null}
      </p>
      {problem.detail && <p>{problem.detail}</p>}
      {Array.isArray(problem.errors) && problem.errors.length > 0 && (
        <ul>
          {problem.errors.map((e, i) => (
            <li key={i}>
              {e.field ? <code>{e.field}</code> : null} {e.message}
            </li>
          ))}
        </ul>
      )}
      {!conflict && ADVICE[status] && <p className="advice">{ADVICE[status]}</p>}
      {status >= 500 && <p className="advice">Try again shortly.</p>}
      <div className="actions">
        {status === 409 && onReload && (
          <button type="button" onClick={onReload}>
            {conflict ? "Reload the latest version" : "Reload"}
          </button>
        )}
        {onDismiss && (
          <button type="button" className="quiet" onClick={onDismiss}>
            Dismiss
          </button>
        )}
      </div>
    </div>
  );
}
