import { useEffect, useRef, useState } from "react";
import { post } from "../../api.js";
import { useMay } from "../../components/Caller.jsx";
import Problem from "../../components/Problem.jsx";
import { when } from "../../format.js";
import { BASE } from "./util.js";

const ACTIVE = ["queued", "running"];
const BADGE = { completed: "ok", failed: "bad", stopped: "warn", running: "warn" };

/**
 * The prompt's test jobs, newest first (`GET …/test-jobs`): runs of more than 20 cases, or
 * asked as jobs, that a worker runs case by case. The list is read again every second
 * while a job is queued or running, and `onEnded` is called when one ends (its run then
 * shows among the earlier runs). Stop ends a job at once (`POST …/test-jobs/{id}/stop`),
 * keeping the cases run so far; a completed job opens its run.
 */
export default function TestJobs({ id, jobs, onOpenRun, onEnded }) {
  const mayWrite = useMay("write");
  const [failure, setFailure] = useState(null);
  const [notice, setNotice] = useState("");
  const items = jobs.data?.data.items || [];
  const active = items.filter((j) => ACTIVE.includes(j.status)).map((j) => j.id);
  const watched = useRef(new Set());

  useEffect(() => {
    const ended = [...watched.current].some((jobId) => !active.includes(jobId));
    watched.current = new Set(active);
    if (ended) onEnded();
    if (!active.length) return undefined;
    const timer = setTimeout(jobs.reload, 1000);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [jobs.data]);

  async function stop(job) {
    setFailure(null);
    setNotice("");
    try {
      // no If-Match: a running job's version moves with every case (docs/assistant.md)
      const { data: ended } = await post(`${BASE}/prompts/${id}/test-jobs/${job.id}/stop`, { reason: "stopped from the console" });
      setNotice(`Test job ${ended.id.slice(0, 8)} stopped after ${ended.done} of ${ended.total} cases.`);
    } catch (err) {
      setFailure(err);
    }
    jobs.reload();
  }

  if (!items.length && !jobs.error) return null;
  return (
    <div>
      <h3>Test jobs</h3>
      <Problem error={jobs.error} onReload={jobs.reload} />
      <Problem error={failure} onDismiss={() => setFailure(null)} onReload={jobs.reload} />
      <p role="status" className="notice">
        {notice}
      </p>
      <table className="dense" data-testid="test-jobs">
        <thead>
          <tr>
            <th scope="col">Asked</th>
            <th scope="col">Status</th>
            <th scope="col" className="num">Cases</th>
            <th scope="col">Passed / failed</th>
            <th scope="col">By</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {items.map((j) => (
            <tr key={j.id} data-testid="test-job" data-status={j.status}>
              <td className="hint nowrap">{when(j.requested_at)}</td>
              <td>
                <span className={`badge ${BADGE[j.status] || ""}`}>{j.status}</span>
                {j.status === "failed" && <div className="hint">{j.error}</div>}
                {j.status === "stopped" && (
                  <div className="hint">
                    by {j.stopped_by}: {j.stop_reason}
                  </div>
                )}
              </td>
              <td className="num nowrap">
                {j.done} of {j.total}
              </td>
              <td className="nowrap">
                {j.passed} / {j.failed}
              </td>
              <td>{j.requested_by}</td>
              <td className="nowrap">
                {ACTIVE.includes(j.status) && mayWrite && (
                  <button type="button" className="danger small" onClick={() => stop(j)} aria-label={`Stop the test job of ${when(j.requested_at)}`}>
                    Stop
                  </button>
                )}
                {j.run_id && (
                  <button type="button" className="quiet small" onClick={() => onOpenRun(j.run_id)} aria-label={`Open run of the test job of ${when(j.requested_at)}`}>
                    Open run
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
