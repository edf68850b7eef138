import { Link } from "react-router-dom";
import { useMay } from "../../components/Caller.jsx";
import { ACTIVE, STATUS_CLASS, fixed, percent, runLabel, shortId, statusText } from "./format.js";
import { when } from "../../format.js";

export function StatusBadge({ job }) {
  const cls = STATUS_CLASS[job.status] ?? "";
  return (
    <span className={`badge ${cls}`} data-testid="job-status">
      {statusText(job.status)}
      {job.stop_requested && ACTIVE.includes(job.status) ? " · stopping" : ""}
    </span>
  );
}

function progress(job) {
  const total = job.hyperparameters?.epochs;
  const done = job.epochs_run ?? job.last_point?.epoch ?? 0;
  return { done, total, share: total ? Math.min(1, done / total) : 0 };
}

/**
 * The runs, newest first: status, progress, best and final validation metrics, links to
 * the run and its registered model version; a checkbox per run to compare, and Stop for
 * queued and running ones.
 */
export default function TrainingJobTable({ jobs, selectedId, compareIds, onToggleCompare, onStop }) {
  const mayWrite = useMay("write"); // a key that may not write sees no Stop buttons
  if (!jobs.length) return <p className="hint">No training runs match. Launch one with the form.</p>;
  return (
    <div className="scroll jobs-scroll" tabIndex={0} role="region" aria-label="Training runs table">
      <table className="dense jobs">
        <caption className="visually-hidden">Training runs, newest first</caption>
        <thead>
          <tr>
            <th scope="col">
              <span className="visually-hidden">Compare</span>
            </th>
            <th scope="col">Run</th>
            <th scope="col">Status</th>
            <th scope="col">Progress</th>
            <th scope="col" className="num">Best val. loss</th>
            <th scope="col" className="num">Final val. acc.</th>
            <th scope="col">Version</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => {
            const p = progress(job);
            const label = runLabel(job);
            return (
              <tr key={job.id} className={job.id === selectedId ? "selected" : undefined} data-job={job.id}>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Compare ${label}`}
                    checked={compareIds.includes(job.id)}
                    onChange={() => onToggleCompare(job.id)}
                  />
                </td>
                <td className="run-cell">
                  <Link to={`/training/${job.id}`} aria-current={job.id === selectedId ? "true" : undefined}>
                    {job.model_name}
                  </Link>
                  <span className="sub">
                    <code>{shortId(job.id)}</code> · {job.dataset_name} · {job.model_type.replace("mlp_", "")} ·{" "}
                    <time dateTime={job.requested_at}>{when(job.requested_at, true)}</time>
                  </span>
                </td>
                <td>
                  <StatusBadge job={job} />
                </td>
                <td>
                  <span className="progress-cell">
                    <span className="bar" aria-hidden="true">
                      <span style={{ width: `${(p.share * 100).toFixed(1)}%` }} />
                    </span>
                    <span className="num">
                      {p.done}/{p.total ?? "?"}
                    </span>
                  </span>
                </td>
                <td className="num">{fixed(job.best_metrics?.val_loss)}</td>
                <td className="num">{percent(job.final_metrics?.val_accuracy)}</td>
                <td>
                  {job.registered_model_version ? (
                    <Link to={`/registry/${job.registered_model_version.model_id}`}>
                      v{job.registered_model_version.version}
                    </Link>
                  ) : (
                    <span className="hint">—</span>
                  )}
                </td>
                <td>
                  {ACTIVE.includes(job.status) && !job.stop_requested && mayWrite && (
                    <button type="button" className="danger small" aria-label={`Stop ${label}`} onClick={() => onStop(job)}>
                      Stop
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
