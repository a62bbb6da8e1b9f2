// Figures as the page writes them.

/** "4 min 10 s", or "12 s". */
export function formatSeconds(seconds) {
  if (!Number.isFinite(seconds)) return '…';
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

/**
 * "measured: CPU 3.1 ms (1 thread 4.0 ms, 2 threads 3.1 ms), WebGPU 61 ms a prediction": what
 * 'auto' chose by; "CPU 3.1 ms a prediction; WebGPU not used: its answer differs from the
 * CPU's by 0.41" where WebGPU failed the check against the CPU; "…; WebGPU not used: this
 * browser has none" where it has no WebGPU at all.
 */
export function describeTimings({ cpu, webgpu, cpuThreads, webgpuDifference, webgpuLossDifference, webgpuMissing }, what) {
  const ms = (value) => `${value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString('en')} ms`;
  const byThreads = cpuThreads
    ? ` (${Object.entries(cpuThreads).map(([count, value]) => `${count} thread${count === '1' ? '' : 's'} ${ms(value)}`).join(', ')})`
    : '';
  if (webgpu !== undefined) return `measured: CPU ${ms(cpu)}${byThreads}, WebGPU ${ms(webgpu)} ${what}`;
  if (webgpuMissing) return `CPU ${ms(cpu)}${byThreads} ${what}; WebGPU not used: this browser has none`;
  const difference = webgpuDifference ?? webgpuLossDifference;
  const refused = difference === undefined ? '' : `; WebGPU not used: its ${webgpuDifference === undefined ? 'first loss' : 'answer'} differs from the CPU's by ${difference.toPrecision(2)}`;
  return `CPU ${ms(cpu)}${byThreads} ${what}${refused}`;
}
