import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/**
 * A uPlot chart. `data` is uPlot's aligned columns ([x, y1, y2, ...]); `series` names and
 * styles y1… ({ label, stroke, fill, dash, width, points }); `bands` fills between two
 * series ({ series: [upperIndex, lowerIndex], fill }). `time` says x is unix seconds
 * (shown in UTC); `legend={false}` hides uPlot's legend for a page that draws its own.
 * New data with the same series updates the plot in place (live curves); the canvas has
 * an accessible name and pages show the numbers in a table beside it.
 */
export default function Chart({
  label,
  data,
  series,
  bands = [],
  time = true,
  height = 300,
  xLabel,
  yLabel,
  legend = true,
  testId,
}) {
  const box = useRef(null);
  const plot = useRef(null);
  const shape = JSON.stringify({ series, bands, time, height, xLabel, yLabel, legend });

  useEffect(() => {
    const el = box.current;
    const options = {
      width: Math.max(el.clientWidth, 320),
      height,
      scales: { x: { time } },
      // dates are UTC days (market closes): shown as such in every time zone
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      legend: { show: legend },
      axes: [
        { label: xLabel, stroke: "#1f2933", grid: { stroke: "#e4e7eb" } },
        { label: yLabel, stroke: "#1f2933", grid: { stroke: "#e4e7eb" } },
      ],
      series: [
        { label: xLabel || (time ? "time" : "x") },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          fill: s.fill,
          dash: s.dash,
          width: s.width ?? 2,
          points: s.points ?? { show: false },
          spanGaps: true,
        })),
      ],
      bands,
    };
    plot.current = new uPlot(options, data, el);
    const resize = new ResizeObserver(() => {
      plot.current?.setSize({ width: Math.max(el.clientWidth, 320), height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // recreated only when the series' shape changes; data updates below
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  const points = data.length ? data[0].length : 0;
  return (
    <figure className="chart">
      <div ref={box} role="img" aria-label={`${label} (${points} points)`} data-testid={testId} data-points={points} />
      <figcaption>{label}</figcaption>
    </figure>
  );
}
