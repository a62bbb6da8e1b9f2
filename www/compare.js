// The compare panel: two networks (a ResNet and its plain twin, by default) trained one
// after the other on the same data, seed and steps, on one device, with their curves and the
// gradient that reaches each layer overlaid. The library trains; this module only draws.
import { train } from '../js/resnet-web.js';
import { drawChart } from './charts.js';
import { builtInData } from './datasets.js';
import { formatSeconds } from './format.js';

const $ = (id) => document.getElementById(id);
const COLOURS = ['#e07b00', '#4a7bd1']; // first run, second run
// Gradient norms every step: a step of the default pair takes about half a second on two
// CPU threads, and the chart must move at least once a second.
const GRADIENT_EVERY = 1;
// A run whose estimate is longer waits for Resume before it goes on.
const ASK_ABOVE_SECONDS = 600;
const VALIDATION_FRACTION = 0.1;

/** Weight layers of a preset's main path ('plain56' -> 56), for the time estimate. */
const depthOf = (arch) => Number(arch.replace(/^\D+/, ''));

export function initComparePanel({ backend, ownClasses, ownInput }) {
  let runs = []; // {arch, colour, steps: [{step, epoch, loss, error}], validation: [[step, accuracy]], first, latest}
  let current = null; // the resnet-web Run going on
  let stopped = false;
  let paused = false;

  $('compare-a').value = 'plain20';
  $('compare-b').value = 'resnet20';
  $('compare-deep').addEventListener('click', () => {
    $('compare-a').value = 'plain56';
    $('compare-b').value = 'resnet56';
  });
  const showOwn = () => { $('compare-subset').disabled = $('compare-data').value === 'own'; };
  $('compare-data').addEventListener('change', showOwn);
  showOwn();

  function notice(message, isError = false) {
    $('compare-notice').textContent = message;
    $('compare-notice').className = isError ? 'error' : '';
  }

  function setRunning(value) {
    paused = false;
    $('compare-start').disabled = value;
    $('compare-pause').disabled = !value;
    $('compare-stop').disabled = !value;
    $('compare-pause').textContent = 'Pause';
    for (const id of ['compare-csv', 'compare-gradients-csv', 'compare-png']) $(id).disabled = value || runs.length === 0;
  }

  async function choices() {
    const archs = [$('compare-a').value, $('compare-b').value];
    if (archs[0] === archs[1]) throw new Error(`Choose two different networks: both are ${archs[0]}.`);
    const value = (id) => Number($(id).value);
    const own = $('compare-data').value === 'own';
    const data = own ? ownClasses() : await builtInData($('compare-data').value);
    return {
      archs,
      data,
      options: {
        input: own ? ownInput() : undefined,
        subset: own ? undefined : value('compare-subset'),
        epochs: value('compare-epochs'),
        batchSize: value('compare-batch'),
        seed: value('compare-seed'),
        validationFraction: VALIDATION_FRACTION,
        gradientEvery: GRADIENT_EVERY,
      },
    };
  }

  $('compare-start').addEventListener('click', async () => {
    if (current) return;
    let chosen;
    try {
      chosen = await choices();
    } catch (error) {
      notice(error.message, true);
      return;
    }
    const { archs, data, options } = chosen;
    runs = archs.map((arch, index) => ({ arch, colour: COLOURS[index], steps: [], validation: [], first: null, latest: null }));
    stopped = false;
    $('compare-estimate').textContent = '';
    $('compare-progress').value = 0;
    $('compare-panel').dataset.finished = '';
    drawAll();
    setRunning(true);
    // The first run's device is the second's too: both on one device, or the times and the
    // curves' numerics would not compare.
    let device = backend();
    try {
      for (const [index, entry] of runs.entries()) {
        if (stopped) break;
        notice(`Preparing ${entry.arch} (${index + 1} of 2)…`);
        current = train(data, { ...options, arch: entry.arch, backend: device, estimateFirst: index === 0 });
        listen(current, entry, index);
        const trained = await current.result;
        const summary = trained.trainingSummary;
        device = /^WebGPU/.test(summary.backend) ? 'webgpu' : 'cpu';
        trained.dispose();
        if (summary.failure) throw new Error(`${entry.arch}: ${summary.failure}`);
      }
      const finished = runs.filter((entry) => entry.steps.length);
      notice(stopped ? 'Stopped: the curves so far are kept.' : `Done. ${finished.map(describe).join(' ')}`);
      $('compare-panel').dataset.finished = stopped ? 'stopped' : 'done';
    } catch (error) {
      notice(error.message, true);
      $('compare-panel').dataset.finished = 'failed';
    } finally {
      current = null;
      setRunning(false);
    }
  });

  function describe(entry) {
    const last = entry.steps.at(-1);
    const accuracy = entry.validation.at(-1)?.[1];
    return `${entry.arch}: loss ${last.loss.toFixed(3)}${accuracy === undefined ? '' : `, validation accuracy ${(100 * accuracy).toFixed(1)}%`}.`;
  }

  $('compare-pause').addEventListener('click', () => {
    if (!current) return;
    paused = !paused;
    if (paused) current.pause();
    else current.resume();
    $('compare-pause').textContent = paused ? 'Resume' : 'Pause';
  });
  $('compare-stop').addEventListener('click', () => {
    stopped = true;
    current?.stop();
  });

  function listen(run, entry, index) {
    run.on('start', (event) => {
      $('compare-progress').max = 2 * event.totalSteps;
      notice(`Training ${entry.arch} (${index + 1} of 2) on ${event.trainCount} pictures on ${event.backend}.`);
    });
    run.on('step', (event) => {
      entry.steps.push({ step: event.step - 1, epoch: event.epoch, loss: event.loss, error: 1 - event.accuracy });
      $('compare-progress').value = index * event.totalSteps + event.step;
      $('compare-status').textContent = `${entry.arch}: step ${event.step}/${event.totalSteps}, epoch ${event.epoch}, `
        + `${event.imagesPerSecond.toFixed(0)} images/s, ${formatSeconds(event.secondsLeft)} left`;
      drawCurves();
    });
    run.on('gradients', (event) => {
      entry.first ??= event;
      entry.latest = event;
      drawGradients();
    });
    run.on('epoch', (event) => {
      entry.validation.push([entry.steps.at(-1)?.step ?? 0, event.accuracy]);
      drawCurves();
    });
    run.on('estimate', (event) => {
      // The second network's steps cost in proportion to its depth.
      const [a, b] = runs.map((r) => depthOf(r.arch));
      const seconds = event.seconds * (1 + b / a);
      const about = `About ${formatSeconds(seconds)} for both runs on ${event.backend}, by the first step.`;
      if (event.waiting && seconds > ASK_ABOVE_SECONDS) {
        paused = true;
        $('compare-pause').textContent = 'Resume';
        $('compare-estimate').textContent = `${about} Press Resume to go on, or Stop.`;
      } else {
        $('compare-estimate').textContent = about;
        if (event.waiting) run.resume();
      }
    });
    run.on('notice', (event) => notice(event.message, true));
  }

  // ---- Charts ----

  function drawCurves() {
    const lines = (points, markers = false) => runs.map((entry) => ({ points: points(entry), colour: entry.colour, markers }));
    drawChart($('compare-loss'), lines((entry) => entry.steps.map((s) => [s.step, s.loss])));
    drawChart($('compare-error'), lines((entry) => entry.steps.map((s) => [s.step, s.error])), { yMax: 1 });
    drawChart($('compare-accuracy'), lines((entry) => entry.validation, true), { yMax: 1 });
    $('compare-legend').replaceChildren(...runs.map((entry) => {
      const item = document.createElement('span');
      item.className = 'legend-item';
      item.style.color = entry.colour;
      item.textContent = `■ ${entry.arch}`;
      return item;
    }));
  }

  function drawGradients() {
    const byDepth = (event) => {
      // A projection shortcut shares its block's depth: the main path's layer is drawn.
      const points = new Map();
      for (const layer of event?.layers ?? []) if (!points.has(layer.depth)) points.set(layer.depth, [layer.depth, layer.gradNorm]);
      return [...points.values()];
    };
    const lines = runs.flatMap((entry) => [
      { points: byDepth(entry.first), colour: entry.colour, dashed: true },
      { points: byDepth(entry.latest), colour: entry.colour, markers: true },
    ]);
    drawChart($('compare-gradients'), lines, { logY: true, xLabel: 'depth' });
    $('compare-gradients').dataset.steps = runs.map((entry) => entry.latest?.step ?? '').join(',');
  }

  function drawAll() {
    drawCurves();
    drawGradients();
  }

  // ---- Export ----

  function curvesCsv() {
    const rows = ['network,step,epoch,loss,error,validation_accuracy'];
    for (const entry of runs) {
      const accuracyAt = new Map(entry.validation);
      for (const s of entry.steps) rows.push([entry.arch, s.step, s.epoch, s.loss, s.error, accuracyAt.get(s.step) ?? ''].join(','));
    }
    return `${rows.join('\n')}\n`;
  }

  function gradientsCsv() {
    const rows = ['network,step,layer,depth,grad_norm,weight_norm,ratio'];
    for (const entry of runs) {
      for (const event of [entry.first, entry.latest]) {
        if (!event || (event === entry.latest && entry.latest === entry.first)) continue;
        for (const layer of event.layers) {
          rows.push([entry.arch, event.step, layer.name, layer.depth, layer.gradNorm, layer.weightNorm, layer.gradNorm / layer.weightNorm].join(','));
        }
      }
    }
    return `${rows.join('\n')}\n`;
  }

  function download(blob, name) {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }
  const names = () => runs.map((entry) => entry.arch).join('-vs-');
  $('compare-csv').addEventListener('click', () => download(new Blob([curvesCsv()], { type: 'text/csv' }), `${names()}-curves.csv`));
  $('compare-gradients-csv').addEventListener('click', () => download(new Blob([gradientsCsv()], { type: 'text/csv' }), `${names()}-gradients.csv`));
  $('compare-png').addEventListener('click', () => {
    // The four charts side by side, with their captions and the legend, in one picture.
    const charts = [...document.querySelectorAll('#compare-charts figure')];
    const [width, height] = [360, 180];
    const sheet = document.createElement('canvas');
    sheet.width = 2 * width + 30;
    sheet.height = 2 * (height + 24) + 24;
    const context = sheet.getContext('2d');
    context.fillStyle = '#fff';
    context.fillRect(0, 0, sheet.width, sheet.height);
    context.font = '12px system-ui';
    charts.forEach((figure, index) => {
      const [x, y] = [10 + (index % 2) * (width + 10), 24 + Math.floor(index / 2) * (height + 24)];
      context.drawImage(figure.querySelector('canvas'), x, y);
      context.fillStyle = '#333';
      context.fillText(figure.querySelector('figcaption').textContent, x, y + height + 14);
    });
    runs.forEach((entry, index) => {
      context.fillStyle = entry.colour;
      context.fillText(`■ ${entry.arch}`, 10 + index * 120, 14);
    });
    sheet.toBlob((blob) => download(blob, `${names()}.png`), 'image/png');
  });
}
