// Line charts on a plain canvas, for the training and compare panels.

/**
 * Draws `lines` ([{points: [[x, y], ...], colour, dashed?, markers?}]) on `canvas`, from 0 (or
 * the smallest value, on a log scale) to `yMax` (default: the largest value). xLabel names the
 * x axis ('step', 'depth'); with logY the y axis is logarithmic (non-positive values skipped).
 */
export function drawChart(canvas, lines, { yMax, logY = false, xLabel = 'step' } = {}) {
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const usable = ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
  const points = lines.flatMap((line) => line.points.filter(usable));
  if (points.length === 0) return;
  const maxX = Math.max(1, ...points.map(([x]) => x));
  const ys = points.map(([, y]) => (logY ? Math.log10(y) : y));
  const top = yMax !== undefined ? (logY ? Math.log10(yMax) : yMax) : Math.max(...ys);
  let bottom = logY ? Math.min(...ys) : 0;
  if (top - bottom < 1e-6) bottom = top - 1;
  const pad = 28;
  const px = (x) => pad + (x / maxX) * (width - pad - 4);
  const py = (y) => 4 + (1 - Math.max(0, Math.min(1, ((logY ? Math.log10(y) : y) - bottom) / (top - bottom)))) * (height - pad - 4);
  context.setLineDash([]);
  context.strokeStyle = '#bbb';
  context.strokeRect(pad, 4, width - pad - 4, height - pad - 4);
  context.fillStyle = '#666';
  context.font = '10px system-ui';
  const label = (value) => (logY ? `1e${Math.round(value)}` : value.toPrecision(2));
  context.fillText(label(top), 0, 12);
  context.fillText(logY ? label(bottom) : '0', 0, height - pad);
  context.fillText(`${xLabel} ${maxX}`, width - 60, height - 6);
  for (const line of lines) {
    const shown = line.points.filter(usable);
    if (!shown.length) continue;
    context.strokeStyle = line.colour;
    context.fillStyle = line.colour;
    context.setLineDash(line.dashed ? [4, 3] : []);
    context.beginPath();
    shown.forEach(([x, y], i) => {
      if (i === 0) context.moveTo(px(x), py(y));
      else context.lineTo(px(x), py(y));
      if (line.markers) context.fillRect(px(x) - 2, py(y) - 2, 4, 4);
    });
    context.stroke();
  }
  context.setLineDash([]);
}
