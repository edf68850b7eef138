import { useEffect, useMemo, useRef, useState } from "react";
import { get, stream } from "../../api.js";
import Chart from "../../components/Chart.jsx";
import Problem from "../../components/Problem.jsx";
import { ACTIVE, fixed, metricText, percent } from "./format.js";

const METRICS_URL = (id) => `/api/v1/ml/jobs/${id}/metrics`;

/**
 * A job's curve: live over SSE (`point` events, then one `status` event) when the job was
 * queued or running when it was opened, else the whole curve as JSON. Points are batched
 * into the state every 200 ms so a fast run does not re-render per point. A point of a
 * new attempt (a worker took the job over) starts the curve again.
 */
function useCurve(jobId, initialStatus, onEnded) {
  const [state, setState] = useState({ points: [], final: null, error: null, live: false, attempt: null });
  const [token, setToken] = useState(0);
  const live = useRef(ACTIVE.includes(initialStatus));
  const ended = useRef(onEnded);
  ended.current = onEnded;

  useEffect(() => {
    const controller = new AbortController();
    const streaming = live.current;
    let points = [];
    let attempt = null;
    let timer = null;
    const flush = () => {
      timer = null;
      setState((s) => ({ ...s, points: points.slice(), attempt }));
    };
    setState({ points: [], final: null, error: null, live: streaming, attempt: null });
    const failed = (error) => {
      if (error?.name === "AbortError") return;
      clearTimeout(timer);
      setState((s) => ({ ...s, points: points.slice(), error, live: false }));
    };
    if (streaming) {
      let final = null;
      let lastId = null;
      let retries = 0;
      // a broken stream (the network, a restarted API, a cut without the final status) is
      // resumed after the last point received, a few times with a growing pause, before
      // the error is shown
      const follow = () =>
        stream(METRICS_URL(jobId), {
          signal: controller.signal,
          lastEventId: lastId,
          onEvent: (message) => {
            retries = 0;
            if (message.id !== null) lastId = message.id;
            if (message.event === "point") {
              const p = message.data;
              if (attempt !== null && p.attempt !== attempt) points = [];
              attempt = p.attempt;
              points.push(p);
              if (!timer) timer = setTimeout(flush, 200);
            } else if (message.event === "status") {
              final = message.data;
            }
          },
        }).then(
          () => {
            // the server ends its stream with a `status` event: without one it was cut
            if (final === null) return resume(new Error("the live stream was cut"));
            clearTimeout(timer);
            setState({ points: points.slice(), final, error: null, live: false, attempt });
            live.current = false;
            ended.current?.(final);
          },
          (error) => {
            const refused = error?.status >= 400 && error?.status < 500;
            if (error?.name === "AbortError" || refused) failed(error);
            else resume(error);
          },
        );
      const resume = (error) => {
        if (retries >= 5) return failed(error);
        retries += 1;
        setTimeout(() => controller.signal.aborted || follow(), 250 * 2 ** retries);
      };
      follow();
    } else {
      get(METRICS_URL(jobId), undefined, { signal: controller.signal }).then((r) => {
        points = r.data.points;
        setState({ points, final: null, error: null, live: false, attempt: r.data.attempt });
      }, failed);
    }
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [jobId, token]);

  return { ...state, reconnect: () => setToken((t) => t + 1) };
}

function columns(points, x, names) {
  return [points.map((p) => p[x]), ...names.map((n) => points.map((p) => p[n]))];
}

/** The live loss and accuracy charts of one job, the latest point and the curve as a table. */
export default function MetricsCharts({ job, onEnded }) {
  const curve = useCurve(job.id, job.status, onEnded);
  const [showTable, setShowTable] = useState(false);
  const x = job.record_every_steps ? "step" : "epoch";
  const { points } = curve;
  const last = points[points.length - 1];
  const epochs = job.hyperparameters?.epochs;

  const lossData = useMemo(() => columns(points, x, ["loss", "val_loss"]), [points, x]);
  const accData = useMemo(() => columns(points, x, ["accuracy", "val_accuracy"]), [points, x]);
  const best = useMemo(() => {
    let b = null;
    for (const p of points) if (p.end_of_epoch && (b === null || p.val_loss < b.val_loss)) b = p;
    return b;
  }, [points]);

  return (
    <section className="curves" aria-labelledby="curves-title">
      <div className="curves-head">
        <h3 id="curves-title">Metrics by {x}</h3>
        <span className="hint" role="status" aria-live="polite" data-testid="curve-state">
          {curve.live ? (
            <>
              <span className="live-dot" aria-hidden="true" /> live: {points.length} points
              {curve.attempt > 1 ? ` (attempt ${curve.attempt})` : ""}
            </>
          ) : curve.final ? (
            `stream ended: ${curve.final.status.replace("_", " ")}, ${points.length} points`
          ) : (
            `${points.length} points${curve.attempt > 1 ? ` of attempt ${curve.attempt}` : ""}`
          )}
        </span>
        {!curve.live && ACTIVE.includes(job.status) && (
          <button type="button" className="quiet" onClick={() => curve.reconnect()}>
            Follow live
          </button>
        )}
      </div>
      <Problem error={curve.error} onReload={curve.reconnect} />
      <dl className="stats" aria-label="Latest point">
        <div>
          <dt>{x === "step" ? "Step" : "Epoch"}</dt>
          <dd className="num" data-testid="latest-epoch">
            {last ? last[x] : "—"}
            {x === "epoch" && epochs ? <span className="of"> / {epochs}</span> : null}
          </dd>
        </div>
        <div>
          <dt>Loss</dt>
          <dd className="num">{fixed(last?.loss)}</dd>
        </div>
        <div>
          <dt>Val. loss</dt>
          <dd className="num">{fixed(last?.val_loss)}</dd>
        </div>
        <div>
          <dt>Accuracy</dt>
          <dd className="num">{percent(last?.accuracy)}</dd>
        </div>
        <div>
          <dt>Val. accuracy</dt>
          <dd className="num">{percent(last?.val_accuracy)}</dd>
        </div>
        <div>
          <dt>Lowest val. loss</dt>
          <dd className="num">{best ? `${fixed(best.val_loss)} @ ${best.epoch}` : "—"}</dd>
        </div>
        <div>
          <dt>Learning rate</dt>
          <dd className="num">{fixed(last?.learning_rate, 5)}</dd>
        </div>
      </dl>
      <div className="chart-pair">
        <Chart
          label={`Loss by ${x}: training and validation`}
          testId="loss-chart"
          data={lossData}
          time={false}
          height={230}
          xLabel={x}
          yLabel="loss"
          series={[
            { label: "loss", stroke: "#0b5cad" },
            { label: "val_loss", stroke: "#b3261e", dash: [6, 3] },
          ]}
        />
        <Chart
          label={`Accuracy by ${x}: training and validation`}
          testId="accuracy-chart"
          data={accData}
          time={false}
          height={230}
          xLabel={x}
          yLabel="accuracy"
          series={[
            { label: "accuracy", stroke: "#1b6e3a" },
            { label: "val_accuracy", stroke: "#8a5300", dash: [6, 3] },
          ]}
        />
      </div>
      <details onToggle={(e) => setShowTable(e.currentTarget.open)}>
        <summary>The curve as a table ({points.length} points)</summary>
        {showTable && (
          <div className="scroll" tabIndex={0} role="region" aria-label="Every metric point">
            <table className="dense">
              <caption className="visually-hidden">Every metric point of the run</caption>
              <thead>
                <tr>
                  <th scope="col" className="num">Epoch</th>
                  <th scope="col" className="num">Step</th>
                  <th scope="col" className="num">Loss</th>
                  <th scope="col" className="num">Val. loss</th>
                  <th scope="col" className="num">Accuracy</th>
                  <th scope="col" className="num">Val. accuracy</th>
                  <th scope="col" className="num">Learning rate</th>
                  <th scope="col" className="num">ms</th>
                </tr>
              </thead>
              <tbody>
                {points.map((p) => (
                  <tr key={p.version}>
                    <td className="num">{p.epoch}</td>
                    <td className="num">{p.step}</td>
                    <td className="num">{fixed(p.loss)}</td>
                    <td className="num">{fixed(p.val_loss)}</td>
                    <td className="num">{metricText("accuracy", p.accuracy)}</td>
                    <td className="num">{metricText("val_accuracy", p.val_accuracy)}</td>
                    <td className="num">{fixed(p.learning_rate, 5)}</td>
                    <td className="num">{fixed(p.duration_ms, 1)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </details>
    </section>
  );
}
