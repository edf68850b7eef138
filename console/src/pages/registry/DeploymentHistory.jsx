import { useMemo, useState } from "react";
import { when } from "../../format.js";

/**
 * The deployment history of one model: every deploy and rollback with who, when, why and
 * from which version to which, newest first. `deployments` come oldest first (as the API
 * lists them). `onAsOf(at)` shows the model as it was right after that entry.
 */
export default function DeploymentHistory({ deployments, asOf, onAsOf }) {
  const [environment, setEnvironment] = useState("");
  const rows = useMemo(
    () => [...deployments].reverse().filter((d) => !environment || d.environment === environment),
    [deployments, environment],
  );
  return (
    <section className="panel" aria-labelledby="history-title">
      <div className="section-head">
        <h3 id="history-title">Deployment history</h3>
        <div className="field inline">
          <label htmlFor="history-env">Environment</label>
          <select id="history-env" value={environment} onChange={(e) => setEnvironment(e.target.value)}>
            <option value="">all</option>
            <option value="production">production</option>
            <option value="staging">staging</option>
          </select>
        </div>
        <span className="hint" data-testid="history-count">
          {rows.length} {rows.length === 1 ? "entry" : "entries"}
        </span>
      </div>
      {rows.length === 0 ? (
        <p className="hint">Never deployed{environment ? ` to ${environment}` : ""}{asOf ? " as of then" : ""}.</p>
      ) : (
        <table className="dense" data-testid="deployment-history">
          <caption className="visually-hidden">Deployments and rollbacks, newest first</caption>
          <thead>
            <tr>
              <th scope="col" className="num">
                #
              </th>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Environment</th>
              <th scope="col">Version</th>
              <th scope="col">Who</th>
              <th scope="col">Why</th>
              <th scope="col">
                <span className="visually-hidden">As of</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr key={d.sequence} data-sequence={d.sequence}>
                <td className="num">{d.sequence}</td>
                <td className="when">
                  <time dateTime={d.deployed_at}>{when(d.deployed_at)}</time>
                </td>
                <td>
                  <span className={`badge ${d.action === "rollback" ? "warn" : "ok"}`}>{d.action}</span>
                </td>
                <td>{d.environment}</td>
                <td className="nowrap">
                  {d.previous_version ? `v${d.previous_version} → ` : ""}v{d.version}
                </td>
                <td className="who">{d.deployed_by}</td>
                <td className="why">{d.reason || <span className="hint">no reason given</span>}</td>
                <td className="nowrap">
                  <button
                    type="button"
                    className="quiet small"
                    aria-label={`View the model as of deployment ${d.sequence} (${when(d.deployed_at)})`}
                    onClick={() => onAsOf(d.deployed_at)}
                    disabled={asOf === d.deployed_at}
                  >
                    as of
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
