// The training panel: settings, the user's own classes, live curves and the result. The
// library trains (in its worker); this module only collects pictures and draws.
import { train } from '../js/resnet-web.js';
import { drawChart } from './charts.js';
import { builtInData } from './datasets.js';
import { describeTimings, formatSeconds } from './format.js';

const $ = (id) => document.getElementById(id);
// Pictures are kept at this size, enough for ImageNet's 224 px; the strip shows them small.
const PICTURE_SIDE = 224;
const MAX_CLASSES = 10;

export function initTrainingPanel({ currentModel, backend, showTrained, drawing, video, webcamOn }) {
  const classes = []; // {name, examples: [{thumbnail, embedding?: {learner, id}}]}
  let run = null; // the resnet-web Run going on
  let paused = false;
  let files = null; // {burnpack, safetensors} of the model trained last
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

  // A picture from any canvas-drawable source, kept small.
  function capture(source, width, height) {
    const scale = Math.min(1, PICTURE_SIDE / Math.max(width, height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const context = canvas.getContext('2d', { willReadFrequently: true });
    context.fillStyle = '#fff';
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(source, 0, 0, canvas.width, canvas.height);
    return { thumbnail: canvas };
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
        button.addEventListener('click', () => {
          forget(entry.examples[exampleIndex]);
          entry.examples.splice(exampleIndex, 1);
          renderClasses();
        });
        return button;
      }));
      row.append(name, ' ', record, ' ', fromDrawing, ' ', files, ' ', remove, ' ', count, strip);
      return row;
    }));
  }

  function addExample(entry, example) {
    keep(entry, example);
    renderClasses();
  }

  // A new picture of a class; with "classifier only" on your own classes, embedded now.
  function keep(entry, example) {
    entry.examples.push(example);
    if (headOnOwnClasses()) embedding(example);
  }

  // ---- Classifier only, on your own classes: transfer learning on kept embeddings ----

  let learner = null; // the resnet-web TransferLearner of the model to fine-tune
  let learnerModels = new Set(); // its base model, and the models it made (the same backbone)
  const headOnOwnClasses = () => $('train-data').value === 'own' && $('train-model').value === 'finetune-head';

  function currentLearner() {
    const model = currentModel();
    if (!learner || !learnerModels.has(model)) {
      learner?.dispose();
      learner = model.transferLearner();
      learnerModels = new Set([model]);
    }
    return learner;
  }

  // The picture's embedding id: the backbone runs once per picture and learner.
  function embedding(example) {
    const current = currentLearner();
    if (example.embedding?.learner !== current) {
      example.embedding = { learner: current, id: current.add(example.thumbnail) };
      example.embedding.id.catch(() => {}); // a failure is reported where the id is awaited
    }
    return example.embedding.id;
  }

  function forget(example) {
    const { learner: owner, id } = example.embedding ?? {};
    if (owner === learner) id.then((value) => owner.remove(value), () => {});
  }

  async function trainHead(options) {
    const { classNames } = ownClasses();
    const examples = [];
    for (const [label, entry] of classes.entries()) {
      for (const example of entry.examples) examples.push({ id: await embedding(example), label });
    }
    const trained = await learner.train({ classNames, examples }, {
      validationFraction: options.validationFraction, seed: options.seed, backend: options.backend,
    });
    learnerModels.add(trained);
    return trained;
  }

  async function addFiles(entry, files) {
    for (const file of files) {
      try {
        const bitmap = await createImageBitmap(file);
        keep(entry, capture(bitmap, bitmap.width, bitmap.height));
        bitmap.close();
      } catch {
        // One bad file costs only itself.
        notice(`${file.name} is not an image this browser can decode; the other pictures are kept.`, true);
      }
    }
    renderClasses();
  }

  // A folder in torchvision's ImageFolder layout: a class per subfolder (its files' parent
  // folder), replacing the classes so far. Files that are not pictures are skipped and
  // counted; a subfolder without pictures makes no class.
  async function addFolder(files) {
    const byClass = new Map();
    for (const { file, path } of files) {
      const parts = path.split('/').filter(Boolean);
      if (parts.length < 2) continue; // a file beside the class folders
      const name = parts.at(-2);
      if (!byClass.has(name)) byClass.set(name, []);
      byClass.get(name).push(file);
    }
    const found = [];
    let skipped = 0;
    for (const [name, classFiles] of [...byClass].sort(([a], [b]) => a.localeCompare(b)).slice(0, MAX_CLASSES)) {
      const entry = { name, examples: [] };
      for (const file of classFiles) {
        try {
          const bitmap = await createImageBitmap(file);
          entry.examples.push(capture(bitmap, bitmap.width, bitmap.height));
          bitmap.close();
        } catch {
          skipped += 1;
        }
      }
      if (entry.examples.length) found.push(entry);
    }
    const empty = Math.min(byClass.size, MAX_CLASSES) - found.length;
    const parts = [];
    if (skipped) parts.push(`${skipped} file(s) that are not pictures skipped`);
    if (empty) parts.push(`${empty} subfolder(s) without pictures left out`);
    if (byClass.size > MAX_CLASSES) parts.push(`only the first ${MAX_CLASSES} classes taken`);
    if (found.length < 2) {
      notice(`The folder needs at least two subfolders of pictures, one per class; it has ${found.length}${parts.length ? ` (${parts.join('; ')})` : ''}. The classes so far are kept.`, true);
      return;
    }
    classes.forEach((entry) => entry.examples.forEach(forget));
    classes.splice(0, classes.length, ...found);
    if (headOnOwnClasses()) found.forEach((entry) => entry.examples.forEach(embedding));
    renderClasses();
    const counts = found.map((entry) => `${entry.name} ${entry.examples.length}`).join(', ');
    notice(`${found.length} classes from the folder: ${counts}.${parts.length ? ` ${parts.join('; ')}.` : ''}`, Boolean(skipped || empty));
  }

  // The files under a dropped folder, with their paths below it.
  async function droppedFiles(entry, path = '') {
    if (entry.isFile) return [{ file: await new Promise((resolve, reject) => entry.file(resolve, reject)), path: `${path}${entry.name}` }];
    const reader = entry.createReader();
    const children = [];
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      children.push(...batch);
    }
    const nested = await Promise.all(children.map((child) => droppedFiles(child, `${path}${entry.name}/`)));
    return nested.flat();
  }

  $('add-folder').addEventListener('change', (event) => {
    addFolder([...event.target.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
    event.target.value = '';
  });
  const folderDrop = $('folder-drop');
  folderDrop.addEventListener('dragover', (event) => event.preventDefault());
  folderDrop.addEventListener('drop', async (event) => {
    event.preventDefault();
    const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
    const files = (await Promise.all(entries.map((entry) => droppedFiles(entry)))).flat();
    addFolder(files);
  });

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
      timer = setInterval(() => keep(entry, capture(video, video.videoWidth, video.videoHeight)), 100);
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
  // Switched to "classifier only" on your own classes: the pictures so far are embedded now.
  const embedAll = () => {
    if (!headOnOwnClasses() || !currentModel()) return;
    classes.forEach((entry) => entry.examples.forEach(embedding));
  };
  $('train-data').addEventListener('change', embedAll);
  $('train-model').addEventListener('change', embedAll);

  // ---- Running ----

  function settings() {
    const value = (id) => Number($(id).value);
    const model = $('train-model').value;
    return {
      source: $('train-data').value,
      fineTune: model.startsWith('finetune') ? model.slice('finetune-'.length) : undefined,
      options: {
        backend: backend(),
        arch: model.startsWith('resnet') ? model : undefined,
        input: $('train-input').value,
        subset: $('train-data').value === 'own' ? undefined : value('train-subset'),
        testSubset: 1000,
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
    const examples = classes.flatMap((entry, label) => entry.examples.map((example) => ({ image: example.thumbnail, label })));
    return { classNames: names, examples };
  }

  function setRunning(value) {
    paused = false;
    $('train-start').disabled = value;
    $('train-pause').disabled = !value;
    $('train-stop').disabled = !value;
    $('train-pause').textContent = 'Pause';
  }

  $('train-start').addEventListener('click', async () => {
    if (run) return;
    const { source, fineTune, options } = settings();
    let data;
    try {
      data = source === 'own' ? ownClasses() : await builtInData(source);
      if (fineTune && !currentModel()) throw new Error('Load a model to fine-tune first.');
    } catch (error) {
      notice(error.message, true);
      return;
    }
    Object.values(curves).forEach((curve) => { curve.length = 0; });
    drawCharts();
    $('train-result').replaceChildren();
    $('train-estimate').textContent = '';
    $('train-progress').value = 0;
    setRunning(true);
    try {
      let trained;
      if (source === 'own' && fineTune === 'head') {
        notice('Embedding the pictures not embedded yet, then training a new classifier on them…');
        trained = await trainHead(options);
      } else {
        notice('Preparing the data…');
        // All layers of a 224 px model take minutes: the run shows its estimate and waits.
        const estimateFirst = fineTune === 'all' && currentModel().input === 'imagenet';
        run = fineTune ? currentModel().fineTune(data, { ...options, fineTune, estimateFirst }) : train(data, options);
        listen(run);
        trained = await run.result;
      }
      files = { burnpack: await trained.export('burnpack'), safetensors: await trained.export('safetensors') };
      showResult(trained);
      $('download-burnpack').disabled = false;
      $('download-safetensors').disabled = false;
      await showTrained(trained, files.burnpack);
    } catch (error) {
      notice(error.message, true);
    } finally {
      run = null;
      setRunning(false);
    }
  });

  $('train-pause').addEventListener('click', () => {
    if (!run) return;
    paused = !paused;
    if (paused) run.pause();
    else run.resume();
    $('train-pause').textContent = paused ? 'Resume' : 'Pause';
    $('train-status').textContent = paused ? 'paused' : $('train-status').textContent;
  });
  $('train-stop').addEventListener('click', () => run?.stop());

  function listen(events) {
    events.on('start', (event) => {
      $('train-progress').max = event.totalSteps;
      const measured = event.timings ? `, ${describeTimings(event.timings, 'a step')}` : '';
      notice(`Training on ${event.trainCount} pictures (${event.validationCount} for validation) on ${event.backend}${measured}.`);
      $('training-panel').dataset.backend = event.backend;
    });
    events.on('step', (event) => {
      $('train-progress').value = event.step;
      curves.trainLoss.push([event.step, event.loss]);
      curves.trainAccuracy.push([event.step, event.accuracy]);
      $('train-status').textContent = `step ${event.step}/${event.totalSteps}, epoch ${event.epoch}, `
        + `${event.imagesPerSecond.toFixed(0)} images/s, ${formatSeconds(event.secondsLeft)} left`;
      drawCharts();
    });
    events.on('estimate', (event) => {
      const about = `About ${formatSeconds(event.seconds)} for ${event.totalSteps} steps on ${event.backend}, `
        + `${event.secondsPerStep.toFixed(1)} s a step by the first.`;
      $('train-estimate').textContent = event.waiting ? `${about} Press Resume to train on, or Stop to keep the model after one step.` : about;
      if (event.waiting) {
        paused = true;
        $('train-pause').textContent = 'Resume';
        $('train-status').textContent = 'waiting: see the estimate';
      }
    });
    events.on('epoch', (event) => {
      const step = curves.trainLoss.at(-1)?.[0] ?? 0;
      curves.validationLoss.push([step, event.loss]);
      curves.validationAccuracy.push([step, event.accuracy]);
      drawCharts();
    });
    events.on('notice', (event) => {
      notice(event.message, true);
      if (event.backend) $('training-panel').dataset.backend = event.backend;
      // A run that went back to an earlier step (a lost GPU): its curves go back with it.
      if (event.resumedFrom !== undefined) {
        for (const curve of Object.values(curves)) {
          while (curve.length && curve.at(-1)[0] > event.resumedFrom) curve.pop();
        }
        drawCharts();
      }
    });
  }

  // ---- Result ----

  function showResult(trained) {
    const result = trained.trainingSummary;
    const parts = [];
    if (result.losses) parts.push(`A new classifier, trained on the ${result.train.count} kept embeddings of the training pictures.`);
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
    if (evaluation) box.replaceChildren(confusionTable(evaluation, trained.classNames));
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

  function download(format) {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([files[format]]));
    link.download = format === 'safetensors' ? 'resnet-web.safetensors' : 'resnet-web.bpk';
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }
  $('download-burnpack').addEventListener('click', () => download('burnpack'));
  $('download-safetensors').addEventListener('click', () => download('safetensors'));

  // ---- Charts: plain canvas lines, train in blue, validation in orange ----

  function drawCharts() {
    const lines = (train, validation) => [
      { points: train, colour: '#4a7bd1' }, { points: validation, colour: '#e07b00', markers: true }];
    drawChart($('loss-chart'), lines(curves.trainLoss, curves.validationLoss));
    drawChart($('accuracy-chart'), lines(curves.trainAccuracy, curves.validationAccuracy), { yMax: 1 });
  }

  // What the compare panel shares: your own classes, as the training panel reads them.
  return { ownClasses, ownInput: () => $('train-input').value };
}
