// Bounded waits for the browser tests, for playwright-core's and puppeteer-core's pages alike.
// Every wait polls with short evaluate() calls, each with a bound of its own, so no wait can
// run into the drivers' protocol time-outs (puppeteer's 180 s), and a page whose main thread
// hangs is told apart from one that is slow. A wait that fails throws the page's state:
// its notices, and what the library's worker was last asked and last answered.
//
// `workerLog` is an init script (playwright's addInitScript, puppeteer's
// evaluateOnNewDocument): it keeps the last messages between the page and each worker it
// starts, so that a failure can say where the two stand, without a line of test code in
// the product.
export const workerLog = `(() => {
  const NativeWorker = window.Worker;
  const log = window.testWorkerLog = [];
  const summary = (data, sent) => {
    const fields = { at: Math.round(performance.now()), sent };
    for (const key of ['type', 'id', 'model', 'run', 'code', 'message', 'step', 'backend', 'notice']) {
      if (data?.[key] !== undefined) fields[key] = typeof data[key] === 'string' ? data[key].slice(0, 200) : data[key];
    }
    return fields;
  };
  window.Worker = class extends NativeWorker {
    constructor(url, options) {
      super(url, options);
      const entry = { url: String(url), worker: this, messages: [], errors: [] };
      log.push(entry);
      const keep = (message) => { entry.messages.push(message); if (entry.messages.length > 12) entry.messages.shift(); };
      this.addEventListener('message', ({ data }) => keep(summary(data, false)));
      this.addEventListener('error', (event) => entry.errors.push(String(event.message)));
      const post = this.postMessage;
      this.postMessage = function (message, transfer) { keep(summary(message, true)); return post.call(this, message, transfer); };
    }
  };
})();`;

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// `promise`, or an error that names `what` once `ms` have passed.
export async function bounded(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms / 1000} s`)), ms); });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const EVALUATE_MS = 20_000; // one poll; a busy page answers in well under a second
const POLL_MS = 200;

// The value of `predicate(arg)` in the page once it is truthy; polls until `timeout` ms have
// passed, then throws with `what` and the page's state.
export async function waitUntil(page, predicate, arg, { timeout, what }) {
  const deadline = Date.now() + timeout;
  for (;;) {
    let value;
    try {
      value = await bounded(page.evaluate(predicate, arg), EVALUATE_MS, 'the page');
    } catch (error) {
      throw new Error(`waiting for ${what}: ${error.message}\n${await pageState(page)}`);
    }
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: not so within ${timeout / 1000} s\n${await pageState(page)}`);
    await sleep(POLL_MS);
  }
}

// `error` with the page's state added, unless a wait has added it already.
export async function withPageState(error, page) {
  if (!error.message.includes('the page\'s state:')) error.message += `\n${await pageState(page)}`;
  return error;
}

// How many library workers (js/worker.js) the page has started: more than one when a
// stalled start was replaced.
export const libraryWorkersStarted = (page) => page.evaluate(() => window.testWorkerLog
  .filter(({ url }) => new URL(url).pathname.endsWith('/js/worker.js')).length);

// What the page shows and what its workers were last asked and last answered, in lines; and
// whether the library's worker answers a status request now (it does at once unless a call
// in it runs without yielding).
export async function pageState(page) {
  const lines = ['the page\'s state:'];
  try {
    const shown = await bounded(page.evaluate(() => {
      const text = (id) => document.getElementById(id)?.textContent?.trim().slice(0, 300);
      const predictions = document.getElementById('predictions');
      return {
        notice: text('notice'), backend: text('backend'), trainNotice: text('train-notice'),
        predictions: predictions && `${predictions.children.length} bars, source ${predictions.dataset.source}, busy ${predictions.getAttribute('aria-busy')}`,
        progress: window.progress,
        workers: (window.testWorkerLog ?? []).map(({ url, messages, errors }) => ({ url, messages, errors })),
        now: Math.round(performance.now()),
      };
    }), 5000, 'the page\'s main thread');
    for (const key of ['notice', 'backend', 'trainNotice', 'predictions', 'progress']) {
      if (shown[key] !== undefined && shown[key] !== null) lines.push(`  ${key}: ${JSON.stringify(shown[key])}`);
    }
    lines.push(`  page time: ${shown.now} ms`);
    for (const worker of shown.workers) {
      lines.push(`  worker ${worker.url}${worker.errors.length ? ` errors: ${worker.errors.join('; ')}` : ''}`);
      for (const message of worker.messages) lines.push(`    ${message.sent ? 'asked ' : 'answer'} ${JSON.stringify(message)}`);
    }
  } catch (error) {
    lines.push(`  ${error.message}`);
    return lines.join('\n');
  }
  try {
    const status = await bounded(page.evaluate(() => {
      const entry = window.testWorkerLog?.findLast(({ url }) => new URL(url).pathname.endsWith('/js/worker.js'));
      if (!entry) return 'no library worker was started';
      const id = `status-${Math.random()}`;
      return new Promise((resolve) => {
        const listen = ({ data }) => {
          if (data?.id !== id) return;
          entry.worker.removeEventListener('message', listen);
          resolve(data.value ?? data);
        };
        entry.worker.addEventListener('message', listen);
        entry.worker.postMessage({ type: 'status', id });
        setTimeout(() => resolve('the library\'s worker did not answer a status request within 3 s'), 3000);
      });
    }), 8000, 'the status request');
    lines.push(`  worker status: ${JSON.stringify(status)}`);
  } catch (error) {
    lines.push(`  ${error.message}`);
  }
  return lines.join('\n');
}
