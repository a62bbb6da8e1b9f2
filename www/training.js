// The training panel: settings, the user's own classes, live curves and the result. The
// worker trains; this module only collects pictures, posts messages and draws.
const $ = (id) => document.getElementById(id);
const THUMBNAIL = 64; // pictures are kept at this size: enough for 28 or 32 px models
const MAX_CLASSES = 10;

export function initTrainingPanel({ request, listen, showTrained, currentInput, drawing, video, webcamOn }) {
  const classes = []; // {name, examples: [{rgba, width, height, thumbnail}]}
  let running = false;
  let paused = false;
  const curves = { trainLoss: [], trainAccuracy: [], validationLoss: [], validationAccuracy: [] };

  function notice(message, isError = false) {
    $('train-notice').textContent = message;
    $('train-notice').className = isError ? 'error' : '';
  }

  // ---- Your own classes ----

  function addClass(name) {
    if (classes.length >= MAX_CLASSES) {
      notice(`At most ${MAX_CLASSES} classes.`, true);
      return;
    }
    classes.push({ name, examples: [] });
    renderClasses();
  }

  // A picture from any canvas-drawable source, kept small, as RGBA.
  function capture(source, width, height) {
    const scale = THUMBNAIL / Math.max(width, height);
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.fillStyle = '#fff';
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(source, 0, 0, canvas.width, canvas.height);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    return { rgba: pixels.data, width: canvas.width, height: canvas.height, thumbnail: canvas };
  }

  function renderClasses() {
    const list = $('class-list');
    list.replaceChildren(...classes.map((entry, index) => {
      const row = document.createElement('div');
      row.className = 'class-row';
      row.dataset.classIndex = String(index);
      const name = document.createElement('input');
      name.type = 'text';
      name.value = entry.name;
      name.setAttribute('aria-label', `name of class ${index + 1}`);
      name.addEventListener('change', () => { entry.name = name.value.trim() || `class ${index + 1}`; });
      const record = document.createElement('button');
      record.type = 'button';
      record.className = 'record';
      record.textContent = 'Hold to record';
      holdToRecord(record, entry);
      const fromDrawing = document.createElement('button');
      fromDrawing.type = 'button';
      fromDrawing.className = 'add-drawing';
      fromDrawing.textContent = 'Add the drawing';
      fromDrawing.addEventListener('click', () => addExample(entry, capture(drawing, drawing.width, drawing.height)));
      const files = document.createElement('input');
      files.type = 'file';
      files.accept = 'image/*';
      files.multiple = true;
      files.className = 'add-files';
      files.addEventListener('change', () => addFiles(entry, files.files));
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'Remove class';
      remove.addEventListener('click', () => { classes.splice(index, 1); renderClasses(); });
      const count = document.createElement('span');
      count.className = 'count';
      count.textContent = `${entry.examples.length} picture(s)`;
      const strip = document.createElement('div');
      strip.className = 'thumbnails';
      strip.append(...entry.examples.map((example, exampleIndex) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.title = 'delete this picture';
        button.append(example.thumbnail);
        button.addEventListener('click', () => { entry.examples.splice(exampleIndex, 1); renderClasses(); });
        return button;
      }));
      row.append(name, ' ', record, ' ', fromDrawing, ' ', files, ' ', remove, ' ', count, strip);
      return row;
    }));
  }

  function addExample(entry, example) {
    entry.examples.push(example);
    renderClasses();
  }

  async function addFiles(entry, files) {
    for (const file of files) {
      try {
        const bitmap = await createImageBitmap(file);
        entry.examples.push(capture(bitmap, bitmap.width, bitmap.height));
        bitmap.close();
      } catch {
        // One bad file costs only itself.
        notice(`${file.name} is not an image this browser can decode; the other pictures are kept.`, true);
      }
    }
    renderClasses();
  }

  // While the button is held, a webcam frame every 100 ms.
  function holdToRecord(button, entry) {
    let timer = null;
    const stop = () => {
      if (timer === null) return;
      clearInterval(timer);
      timer = null;
      renderClasses();
    };
    button.addEventListener('pointerdown', () => {
      if (!webcamOn() || video.videoWidth === 0) {
        notice('Start the webcam first (in the Input section).', true);
        return;
      }
      timer = setInterval(() => entry.examples.push(capture(video, video.videoWidth, video.videoHeight)), 100);
    });
    button.addEventListener('pointerup', stop);
    button.addEventListener('pointerleave', stop);
  }

  $('add-class').addEventListener('click', () => addClass(`class ${classes.length + 1}`));
  addClass('class 1');
  addClass('class 2');

  const showOwn = () => {
    const own = $('train-data').value === 'own';
    $('own-classes').hidden = !own;
    $('train-subset').disabled = own;
  };
  $('train-data').addEventListener('change', showOwn);
  showOwn();

  // ---- Running ----

  function settings() {
    const value = (id) => Number($(id).value);
    const model = $('train-model').value;
    return {
      source: $('train-data').value,
      subset: value('train-subset'),
      testSubset: 1000,
      fineTune: model.startsWith('finetune') ? model.slice('finetune-'.length) : undefined,
      input: $('train-data').value === 'own' && model.startsWith('finetune') ? currentInput() : $('train-input').value,
      options: {
        backend: $('backend-choice').value,
        arch: model.startsWith('resnet') ? model : undefined,
        epochs: value('train-epochs'),
        batchSize: value('train-batch'),
        learningRate: value('train-lr'),
        weightDecay: value('train-wd'),
        optimizer: $('train-optimizer').value,
        schedule: $('train-schedule').value,
        augment: $('train-augment').checked,
        validationFraction: value('train-validation'),
        seed: value('train-seed'),
      },
    };
  }

  function ownClasses() {
    const names = classes.map((entry) => entry.name);
    if (names.length < 2) throw new Error('Add at least two classes.');
    const empty = classes.find((entry) => entry.examples.length === 0);
    if (empty) throw new Error(`Class '${empty.name}' has no pictures yet: add some, or remove the class.`);
    if (new Set(names).size !== names.length) throw new Error('Two classes have the same name.');
    const examples = classes.flatMap((entry, label) => entry.examples.map((example) => ({
      // Copies: the originals stay here, whatever happens to the run.
      rgba: example.rgba.slice().buffer, width: example.width, height: example.height, label,
    })));
    return { classNames: names, examples };
  }

  function setRunning(value) {
    running = value;
    paused = false;
    $('train-start').disabled = value;
    $('train-pause').disabled = !value;
    $('train-stop').disabled = !value;
    $('train-pause').textContent = 'Pause';
  }

  $('train-start').addEventListener('click', async () => {
    if (running) return;
    const message = { type: 'train', ...settings() };
    try {
      if (message.source === 'own') message.own = ownClasses();
    } catch (error) {
      notice(error.message, true);
      return;
    }
    Object.values(curves).forEach((curve) => { curve.length = 0; });
    drawCharts();
    $('train-result').replaceChildren();
    $('train-progress').value = 0;
    notice('Preparing the data…');
    setRunning(true);
    try {
      const result = await request(message, message.own ? message.own.examples.map((e) => e.rgba) : []);
      showResult(result);
      showTrained(result);
      $('download-burnpack').disabled = false;
      $('download-safetensors').disabled = false;
    } catch (error) {
      notice(error.message, true);
    } finally {
      setRunning(false);
    }
  });

  $('train-pause').addEventListener('click', () => {
    paused = !paused;
    request.post({ type: 'train-control', action: paused ? 'pause' : 'resume' });
    $('train-pause').textContent = paused ? 'Resume' : 'Pause';
    $('train-status').textContent = paused ? 'paused' : $('train-status').textContent;
  });
  $('train-stop').addEventListener('click', () => request.post({ type: 'train-control', action: 'stop' }));

  listen((event) => {
    if (event.type === 'train-started') {
      $('train-progress').max = event.totalSteps;
      notice(`Training on ${event.trainCount} pictures (${event.validationCount} for validation) on ${event.backend}.`);
      $('training-panel').dataset.backend = event.backend;
    } else if (event.type === 'train-progress') {
      $('train-progress').value = event.step;
      curves.trainLoss.push([event.step, event.loss]);
      curves.trainAccuracy.push([event.step, event.accuracy]);
      $('train-status').textContent = `step ${event.step}/${event.totalSteps}, epoch ${event.epoch}, `
        + `${event.imagesPerSecond.toFixed(0)} images/s, ${formatSeconds(event.secondsLeft)} left`;
      drawCharts();
    } else if (event.type === 'train-epoch') {
      const step = curves.trainLoss.at(-1)?.[0] ?? 0;
      curves.validationLoss.push([step, event.loss]);
      curves.validationAccuracy.push([step, event.accuracy]);
      drawCharts();
    } else if (event.type === 'train-notice') {
      notice(event.message, true);
      if (event.backend) $('training-panel').dataset.backend = event.backend;
      // A run that went back to an earlier step (a lost GPU): its curves go back with it.
      if (event.resumedFrom !== undefined) {
        for (const curve of Object.values(curves)) {
          while (curve.length && curve.at(-1)[0] > event.resumedFrom) curve.pop();
        }
        drawCharts();
      }
    }
  });

  // ---- Result ----

  function showResult(result) {
    const parts = [];
    if (result.failure) parts.push(`Stopped: ${result.failure}.`);
    else if (result.stopped) parts.push('Stopped early; the model as trained so far is kept.');
    if (result.validation) parts.push(`Validation accuracy ${(100 * result.validation.accuracy).toFixed(1)}%.`);
    if (result.test) parts.push(`Test accuracy ${(100 * result.test.accuracy).toFixed(1)}% on ${result.test.count} test images.`);
    parts.push(`${result.seconds.toFixed(1)} s on ${result.backend}.`);
    notice(parts.join(' '), Boolean(result.failure));
    const box = $('train-result');
    box.dataset.validationAccuracy = result.validation ? String(result.validation.accuracy) : '';
    box.dataset.testAccuracy = result.test ? String(result.test.accuracy) : '';
    box.dataset.stopped = String(result.stopped);
    box.dataset.failure = result.failure ?? '';
    const evaluation = result.validation ?? result.test;
    if (evaluation) box.replaceChildren(confusionTable(evaluation, result.classNames));
  }

  function confusionTable(evaluation, names) {
    const k = names.length;
    const table = document.createElement('table');
    table.id = 'confusion-matrix';
    const caption = table.createCaption();
    caption.textContent = 'Confusion matrix (rows: true class, columns: predicted) and accuracy per class';
    const head = table.createTHead().insertRow();
    head.append(...['', ...names, 'accuracy'].map((text) => {
      const th = document.createElement('th');
      th.textContent = text; // text, never HTML: the names are the user's
      return th;
    }));
    const body = table.createTBody();
    for (let truth = 0; truth < k; truth++) {
      const row = body.insertRow();
      const th = document.createElement('th');
      th.textContent = names[truth];
      row.append(th);
      for (let predicted = 0; predicted < k; predicted++) {
        const cell = row.insertCell();
        cell.textContent = String(evaluation.confusion[truth * k + predicted]);
        if (truth === predicted) cell.className = 'diagonal';
      }
      const accuracy = evaluation.perClass[truth];
      row.insertCell().textContent = Number.isNaN(accuracy) ? '–' : `${(100 * accuracy).toFixed(1)}%`;
    }
    return table;
  }

  async function download(format) {
    try {
      const { bytes } = await request({ type: 'export', format });
      const link = document.createElement('a');
      link.href = URL.createObjectURL(new Blob([bytes]));
      link.download = format === 'safetensors' ? 'resnet-web.safetensors' : 'resnet-web.bpk';
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    } catch (error) {
      notice(error.message, true);
    }
  }
  $('download-burnpack').addEventListener('click', () => download('burnpack'));
  $('download-safetensors').addEventListener('click', () => download('safetensors'));

  // ---- Charts: plain canvas lines, train in blue, validation in orange ----

  function drawCharts() {
    drawChart($('loss-chart'), [curves.trainLoss, curves.validationLoss], null);
    drawChart($('accuracy-chart'), [curves.trainAccuracy, curves.validationAccuracy], 1);
  }

  function drawChart(canvas, series, fixedMax) {
    const context = canvas.getContext('2d');
    const { width, height } = canvas;
    context.clearRect(0, 0, width, height);
    const points = series.flat();
    if (points.length === 0) return;
    const maxX = Math.max(1, ...points.map(([x]) => x));
    const maxY = fixedMax ?? Math.max(1e-6, ...points.map(([, y]) => (Number.isFinite(y) ? y : 0)));
    const pad = 24;
    context.strokeStyle = '#bbb';
    context.strokeRect(pad, 4, width - pad - 4, height - pad - 4);
    context.fillStyle = '#666';
    context.font = '10px system-ui';
    context.fillText(maxY.toPrecision(2), 0, 12);
    context.fillText('0', 8, height - pad);
    context.fillText(`step ${maxX}`, width - 60, height - 6);
    ['#4a7bd1', '#e07b00'].forEach((colour, index) => {
      const line = series[index];
      if (!line.length) return;
      context.strokeStyle = colour;
      context.fillStyle = colour;
      context.beginPath();
      line.forEach(([x, y], i) => {
        const px = pad + (x / maxX) * (width - pad - 4);
        const py = 4 + (1 - Math.min(1, y / maxY)) * (height - pad - 4);
        if (i === 0) context.moveTo(px, py);
        else context.lineTo(px, py);
        if (index === 1) context.fillRect(px - 2, py - 2, 4, 4);
      });
      context.stroke();
    });
  }
}

function formatSeconds(seconds) {
  if (!Number.isFinite(seconds)) return '…';
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}
