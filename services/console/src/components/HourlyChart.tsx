import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Tool calls and failed calls per hour (uPlot, drawn on a canvas). */
export function HourlyChart({ hours }: { hours: Array<{ hour: string; calls: number; errors: number }> }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const now = Math.floor(Date.now() / 3_600_000) * 3600;
    const byHour = new Map(hours.map((h) => [Math.floor(Date.parse(h.hour) / 1000), h]));
    const xs: number[] = [];
    const calls: number[] = [];
    const errors: number[] = [];
    for (let t = now - 23 * 3600; t <= now; t += 3600) {
      xs.push(t);
      calls.push(byHour.get(t)?.calls ?? 0);
      errors.push(byHour.get(t)?.errors ?? 0);
    }
    const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
    const chart = new uPlot(
      {
        width: Math.max(320, el.clientWidth),
        height: 220,
        series: [
          {},
          {
            label: 'Calls',
            stroke: '#1d4ed8',
            fill: 'rgba(29, 78, 216, 0.35)',
            ...(bars ? { paths: bars } : {}),
          },
          {
            label: 'Errors',
            stroke: '#b91c1c',
            fill: 'rgba(185, 28, 28, 0.5)',
            ...(bars ? { paths: bars } : {}),
          },
        ],
        axes: [{ stroke: '#1f2937' }, { stroke: '#1f2937' }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      },
      [xs, calls, errors],
      el,
    );
    return () => chart.destroy();
  }, [hours]);
  const total = hours.reduce((n, h) => n + h.calls, 0);
  const failed = hours.reduce((n, h) => n + h.errors, 0);
  return (
    <figure className="chart">
      <div
        ref={ref}
        role="img"
        aria-label={`Tool calls per hour over 24 hours: ${total} calls, ${failed} errors`}
      />
      <figcaption>
        {total} calls, {failed} errors in the last 24 hours
      </figcaption>
    </figure>
  );
}
