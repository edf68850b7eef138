import { useCallback, useEffect, useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { all, get, post } from "../../api.js";
import { useMay } from "../../components/Caller.jsx";
import Confirm from "../../components/Confirm.jsx";
import Problem from "../../components/Problem.jsx";
import useResource from "../../components/useResource.js";
import CompareRuns from "./CompareRuns.jsx";
import LaunchForm from "./LaunchForm.jsx";
import MetricsCharts from "./MetricsCharts.jsx";
import TrainingJobTable, { StatusBadge } from "./TrainingJobTable.jsx";
import { ACTIVE, duration, fixed, metricText, runLabel, shortId } from "./format.js";
import { when } from "../../format.js";
import "./training.css";

const POLL_MS = 1500;
const STATUSES = ["queued", "running", "completed", "early_stopped", "stopped", "failed"];

function settingsText(object) {
  if (!object) return "off";
  return Object.entries(object)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** One run: what it is, where it stands, its live curves; Stop while it is active. */
function JobDetail({ job, etag, onStop, stopError, onReload, onEnded }) {
  const decision = job.early_stopping_decision;
  const mayWrite = useMay("write");
  return (
    <section className="panel detail" aria-labelledby="detail-title" data-testid="job-detail">
      <div className="panel-head">
        <h2 id="detail-title">
          {job.model_name} <code className="hint">{shortId(job.id)}</code>
        </h2>
        <StatusBadge job={job} />
        {job.reason && <span className="hint">{job.reason}</span>}
        <span className="spacer" />
        {ACTIVE.includes(job.status) && !job.stop_requested && mayWrite && (
          <button type="button" className="danger" onClick={() => onStop(job, "detail")}>
            Stop run
          </button>
        )}
      </div>
      <Problem error={stopError} onReload={onReload} />
      <dl className="facts">
        <div>
          <dt>Dataset</dt>
          <dd>
            {job.dataset_name} <code className="hint">{job.dataset_hash.slice(7, 19)}</code>
          </dd>
        </div>
        <div>
          <dt>Model type</dt>
          <dd>{job.model_type}</dd>
        </div>
        <div>
          <dt>Attempt · worker</dt>
          <dd>
            {job.attempt} · {job.worker || "—"}
          </dd>
        </div>
        <div>
          <dt>Requested</dt>
          <dd>
            {when(job.requested_at)} by {job.requested_by}
          </dd>
        </div>
        <div>
          <dt>Ran for</dt>
          <dd>{job.started_at ? duration(job.started_at, job.ended_at) : "not started"}</dd>
        </div>
        <div>
          <dt>Best epoch</dt>
          <dd>
            {job.best_epoch ?? "—"}
            {job.best_metrics ? ` (val_loss ${fixed(job.best_metrics.val_loss)}, val_acc ${metricText("val_accuracy", job.best_metrics.val_accuracy)})` : ""}
          </dd>
        </div>
        <div className="wide">
          <dt>Hyperparameters</dt>
          <dd>
            <code>{settingsText(job.hyperparameters)}</code>
          </dd>
        </div>
        <div className="wide">
          <dt>Early stopping</dt>
          <dd>
            <code>{settingsText(job.early_stopping)}</code>
            {decision ? <span className="hint"> — {settingsText(decision)}</span> : null}
          </dd>
        </div>
        <div>
          <dt>Artifact</dt>
          <dd>
            {job.artifact_hash ? (
              <code title={job.artifact_hash}>
                {job.artifact_hash.slice(7, 19)}… (epoch {job.artifact_epoch})
              </code>
            ) : (
              "—"
            )}
          </dd>
        </div>
        <div>
          <dt>Registered version</dt>
          <dd>
            {job.registered_model_version ? (
              <Link to={`/registry/${job.registered_model_version.model_id}`}>
                {job.registered_model_version.model_name} v{job.registered_model_version.version}
              </Link>
            ) : (
              "—"
            )}
          </dd>
        </div>
        {job.stop_requested && (
          <div className="wide">
            <dt>Stop requested</dt>
            <dd>
              by {job.stop_requested_by}
              {job.stop_reason ? `: ${job.stop_reason}` : ""}
            </dd>
          </div>
        )}
        <div>
          <dt>Version (ETag)</dt>
          <dd>
            <code>{etag || job.version}</code>
          </dd>
        </div>
      </dl>
      <MetricsCharts key={job.id} job={job} onEnded={onEnded} />
    </section>
  );
}

/**
 * Model training (F11.5): launch runs on a dataset with every hyperparameter and early
 * stopping, follow them live, stop them, and compare runs by their aligned curves.
 */
export default function ModelTraining() {
  const params = useParams();
  const selectedId = (params["*"] || "").split("/")[0] || null;
  const navigate = useNavigate();
  const [status, setStatus] = useState("");
  const [modelType, setModelType] = useState("");
  const [compareIds, setCompareIds] = useState([]);
  const [stopping, setStopping] = useState(null); // { job, etag, from }
  const [reason, setReason] = useState("");
  const [stopError, setStopError] = useState(null);
  const [notice, setNotice] = useState(null);

  const jobs = useResource(
    // the newest 1,000 runs, newest first
    (signal) => all("/api/v1/ml/jobs", { status, model_type: modelType, order: "newest" }, { signal, max: 1000 }),
    [status, modelType],
  );
  const detail = useResource(
    (signal) => (selectedId ? get(`/api/v1/ml/jobs/${selectedId}`, undefined, { signal }) : Promise.resolve(null)),
    [selectedId],
  );
  const newest = useMemo(() => jobs.data || [], [jobs.data]);
  const job = detail.data?.data && detail.data.data.id === selectedId ? detail.data.data : null;
  const active = newest.filter((j) => ACTIVE.includes(j.status)).length;

  const reloadJobs = jobs.reload;
  const reloadDetail = detail.reload;
  const reloadAll = useCallback(() => {
    reloadJobs();
    reloadDetail();
  }, [reloadJobs, reloadDetail]);

  const reloadAfterStop = () => {
    setStopError(null);
    reloadAll();
  };

  // while anything runs, the table and the open run follow it
  const following = active > 0 || (job && ACTIVE.includes(job.status));
  useEffect(() => {
    if (!following) return undefined;
    const timer = setInterval(reloadAll, POLL_MS);
    return () => clearInterval(timer);
  }, [following, reloadAll]);

  function launched(accepted) {
    setNotice(`Run ${accepted.model_name} · ${shortId(accepted.id)} queued.`);
    reloadJobs();
    navigate(`/training/${accepted.id}`);
  }

  async function askStop(target, from) {
    setStopError(null);
    try {
      // the latest version and status, read just before asking
      const fresh = await get(`/api/v1/ml/jobs/${target.id}`);
      setReason("");
      setStopping({ job: fresh.data, etag: fresh.etag, from });
    } catch (err) {
      setStopError({ error: err, from });
    }
  }

  async function confirmStop() {
    const { job: target, etag, from } = stopping;
    setStopping(null);
    try {
      // a queued run's version is stable: If-Match guards it. A running run's version moves
      // with every metric point, so its stop goes without If-Match (docs/training.md).
      const ifMatch = target.status === "queued" ? etag : undefined;
      const response = await post(`/api/v1/ml/jobs/${target.id}/stop`, { reason: reason.trim() }, { ifMatch });
      setNotice(
        response.status === 200
          ? `Run ${runLabel(target)} stopped before it started.`
          : `Stop requested: the worker ends ${runLabel(target)} within seconds.`,
      );
    } catch (err) {
      setStopError({ error: err, from });
    }
    reloadAll();
  }

  const toggleCompare = (id) => setCompareIds((ids) => (ids.includes(id) ? ids.filter((i) => i !== id) : [...ids, id].slice(-10)));

  return (
    <div className="training">
      <div className="page-head">
        <h1>Model training</h1>
        <span className="hint" data-testid="summary">
          {jobs.data ? `${newest.length} ${newest.length === 1 ? "run" : "runs"}${active ? ` · ${active} active` : ""}` : ""}
        </span>
      </div>
      {notice && (
        <p className="notice" role="status">
          {notice}{" "}
          <button type="button" className="quiet small" onClick={() => setNotice(null)}>
            Dismiss
          </button>
        </p>
      )}
      <div className="layout">
        <LaunchForm onLaunched={launched} />
        <div className="main-col">
          <section className="panel" aria-labelledby="runs-title">
            <div className="panel-head">
              <h2 id="runs-title">Runs</h2>
              <div className="field inline">
                <label htmlFor="filter-status">Status</label>
                <select id="filter-status" value={status} onChange={(e) => setStatus(e.target.value)}>
                  <option value="">any</option>
                  {STATUSES.map((s) => (
                    <option key={s} value={s}>
                      {s.replace("_", " ")}
                    </option>
                  ))}
                </select>
              </div>
              <div className="field inline">
                <label htmlFor="filter-type">Model type</label>
                <select id="filter-type" value={modelType} onChange={(e) => setModelType(e.target.value)}>
                  <option value="">any</option>
                  <option value="mlp_classifier">classifier</option>
                  <option value="mlp_regressor">regressor</option>
                </select>
              </div>
              <span className="spacer" />
              <span className="hint">
                {compareIds.length < 2 ? "Tick two or more runs to compare them." : `${compareIds.length} runs ticked.`}
              </span>
            </div>
            {stopError && (stopError.from === "table" || !job) && (
              <Problem error={stopError.error} onReload={reloadAfterStop} onDismiss={() => setStopError(null)} />
            )}
            <Problem error={jobs.error} onReload={jobs.reload} />
            {!jobs.data && jobs.loading ? (
              <p role="status">Loading runs…</p>
            ) : (
              <TrainingJobTable
                jobs={newest}
                selectedId={selectedId}
                compareIds={compareIds}
                onToggleCompare={toggleCompare}
                onStop={(j) => askStop(j, "table")}
              />
            )}
          </section>
          {compareIds.length >= 2 && (
            <CompareRuns ids={compareIds} onRemove={toggleCompare} onClear={() => setCompareIds([])} />
          )}
          {selectedId && <Problem error={detail.error} onReload={detail.reload} />}
          {job && (
            <JobDetail
              job={job}
              etag={detail.data.etag}
              onStop={askStop}
              stopError={stopError?.from === "detail" ? stopError.error : null}
              onReload={reloadAfterStop}
              onEnded={reloadAll}
            />
          )}
          {!selectedId && compareIds.length < 2 && (
            <p className="hint panel empty">Select a run to see its curves, or launch one: it opens here and its charts follow it live.</p>
          )}
        </div>
      </div>
      <Confirm
        open={stopping !== null}
        title={stopping ? `Stop ${runLabel(stopping.job)}?` : "Stop"}
        confirmLabel="Stop run"
        danger
        onConfirm={confirmStop}
        onCancel={() => setStopping(null)}
      >
        {stopping && (
          <>
            <p>
              {stopping.job.status === "queued"
                ? "The run is queued: it ends at once, before any training."
                : `The run is at epoch ${stopping.job.last_point?.epoch ?? 0} of ${stopping.job.hyperparameters.epochs}: the worker ends it within seconds, at its next chunk of steps.`}{" "}
              A stopped run registers no model version.
            </p>
            <div className="field wide">
              <label htmlFor="stop-reason">Reason (recorded with the stop)</label>
              <input id="stop-reason" type="text" maxLength={1000} value={reason} onChange={(e) => setReason(e.target.value)} />
            </div>
          </>
        )}
      </Confirm>
    </div>
  );
}
