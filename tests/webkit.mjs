// WebKit (Safari's engine) as the WebKit tests drive it: Debian's WebKitGTK MiniBrowser under
// Xvfb (it has no headless mode here), through WebKitWebDriver over W3C WebDriver, with a
// client of a few calls over fetch (no npm client: each downloads or bundles a browser).
// A page is a WebDriver session of its own (a MiniBrowser of its own, its storage included);
// it has the calls of puppeteer's pages the tests, tests/page-steps.mjs and tests/waits.mjs
// use. WEBDRIVER_LOG=1 prints every call.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

const MINIBROWSER = process.env.MINIBROWSER ?? '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
const DRIVER = process.env.WEBKIT_DRIVER ?? '/usr/bin/WebKitWebDriver';
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf'; // the W3C name of an element reference
const START_MS = 30_000;

const freePort = () => new Promise((resolve, reject) => {
  const probe = createServer();
  probe.once('error', reject);
  probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});

// The display number Xvfb chose (-displayfd), once it is up.
function startXvfb() {
  const xvfb = spawn('Xvfb', ['-displayfd', '1', '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let errors = '';
  xvfb.stderr.on('data', (chunk) => { errors += chunk; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Xvfb did not start within ${START_MS / 1000} s: ${errors}`)), START_MS);
    xvfb.once('error', (error) => { clearTimeout(timer); reject(new Error(`Xvfb could not start (${error.message}): apt-get install xvfb`)); });
    xvfb.stdout.once('data', (chunk) => { clearTimeout(timer); resolve({ xvfb, display: `:${String(chunk).trim()}` }); });
  });
}

// WebKitWebDriver on a free port of 127.0.0.1, once it answers /status.
async function startDriver(display) {
  const port = await freePort();
  const driver = spawn(DRIVER, [`--port=${port}`, '--host=127.0.0.1'], { env: { ...process.env, DISPLAY: display }, stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_MS;
  for (;;) {
    if (driver.exitCode !== null) throw new Error(`${DRIVER} ended at once (${driver.exitCode}): apt-get install webkit2gtk-driver`);
    try {
      if ((await (await fetch(`${url}/status`)).json()).value?.ready) return { driver, url };
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`${DRIVER} did not answer within ${START_MS / 1000} s`);
    await new Promise((resolve) => { setTimeout(resolve, 100); });
  }
}

class WebDriverError extends Error {}

// No call waits for long: a page's scripts are bounded by the session's script time-out
// (60 s), so a call that has not answered in 90 s never will, and the error names it.
const CALL_MS = 90_000;

async function call(url, method, path, body) {
  if (process.env.WEBDRIVER_LOG) console.error(`  webdriver ${method} ${path} ${JSON.stringify(body ?? '').slice(0, 120)}`);
  let response;
  try {
    response = await fetch(`${url}${path}`, {
      method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(CALL_MS),
    });
  } catch (error) {
    throw new WebDriverError(`WebDriver ${method} ${path} (${JSON.stringify(body ?? '').slice(0, 200)}): ${error.name === 'TimeoutError' ? `no answer in ${CALL_MS / 1000} s` : error.message}`);
  }
  const { value } = await response.json();
  if (!response.ok) throw new WebDriverError(`WebDriver ${method} ${path}: ${value?.error}: ${value?.message}`);
  return value;
}

// A function of the tests, and its arguments, as a script for WebDriver's execute/async: its
// value (awaited) or its error come back as {ok} or {error}, so a page's exception reads as
// one and not as a driver's failure.
const asyncScript = (fn) => `const done = arguments[arguments.length - 1];
const args = Array.prototype.slice.call(arguments, 0, -1);
Promise.resolve().then(() => (${fn}).apply(null, args))
  .then((ok) => done({ ok: ok === undefined ? null : ok }), (error) => done({ error: String(error && error.stack || error) }));`;

class WebKitPage {
  constructor(url, session) {
    this.url = url;
    this.session = session;
    this.base = `/session/${session}`;
  }

  call(method, path, body) {
    return call(this.url, method, `${this.base}${path}`, body);
  }

  goto(address) {
    return this.call('POST', '/url', { url: address });
  }

  reload() {
    return this.call('POST', '/refresh', {});
  }

  /** fn(...args) in the page, awaited; its value must be JSON. */
  async evaluate(fn, ...args) {
    const answer = await this.call('POST', '/execute/async', { script: asyncScript(fn), args: args.map((a) => (a === undefined ? null : a)) });
    if (answer?.error) throw new Error(`in the page: ${answer.error}`);
    return answer?.ok;
  }

  $eval(selector, fn, ...args) {
    return this.evaluate(`function (selector, ...args) {
      const element = document.querySelector(selector);
      if (!element) throw new Error('no element matches ' + selector);
      return (${fn})(element, ...args);
    }`, selector, ...args);
  }

  $$eval(selector, fn, ...args) {
    return this.evaluate(`function (selector, ...args) { return (${fn})([...document.querySelectorAll(selector)], ...args); }`, selector, ...args);
  }

  async element(selector) {
    return (await this.call('POST', '/element', { using: 'css selector', value: selector }))[ELEMENT];
  }

  async click(selector) {
    await this.call('POST', `/element/${await this.element(selector)}/click`, {});
  }

  /** An element, as puppeteer's `page.$` gives it, for what the tests do with one: upload files. */
  async $(selector) {
    const element = await this.element(selector);
    return {
      // Files (paths on this machine) chosen in an <input type=file>.
      uploadFile: (...paths) => this.call('POST', `/element/${element}/value`, { text: paths.join('\n') }),
    };
  }

  /**
   * Strokes with the mouse: each a list of [x, y] points in CSS pixels from the element's
   * top-left corner (WebDriver's origin is the element's centre).
   */
  async drawOn(selector, strokes) {
    const element = await this.element(selector);
    const { width, height } = await this.$eval(selector, (e) => {
      e.scrollIntoView({ block: 'center' });
      const box = e.getBoundingClientRect();
      return { width: box.width, height: box.height };
    });
    const to = ([x, y], duration = 0) => ({
      type: 'pointerMove', duration, origin: { [ELEMENT]: element }, x: Math.round(x - width / 2), y: Math.round(y - height / 2),
    });
    for (const stroke of strokes) {
      const actions = [to(stroke[0]), { type: 'pointerDown', button: 0 }];
      for (const point of stroke.slice(1)) actions.push(to(point, 30));
      actions.push({ type: 'pointerUp', button: 0 });
      await this.call('POST', '/actions', { actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions }] });
    }
    await this.call('DELETE', '/actions');
  }

  async screenshot() {
    return Buffer.from(await this.call('GET', '/screenshot'), 'base64');
  }

  close() {
    return call(this.url, 'DELETE', this.base).catch(() => {});
  }
}

/**
 * Xvfb and WebKitWebDriver, started: {version, newPage(), close()}. Each newPage() is a
 * session: a MiniBrowser of its own.
 */
export async function launchWebKit() {
  const { xvfb, display } = await startXvfb();
  let driver;
  try {
    driver = await startDriver(display);
  } catch (error) {
    xvfb.kill();
    throw error;
  }
  const pages = new Set();
  const browser = {
    version: null,
    async newPage() {
      const { sessionId, capabilities } = await call(driver.url, 'POST', '/session', {
        capabilities: {
          alwaysMatch: {
            'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] },
            timeouts: { script: 60_000, pageLoad: 60_000 },
          },
        },
      });
      browser.version ??= `${capabilities.browserName} ${capabilities.browserVersion}`;
      const page = new WebKitPage(driver.url, sessionId);
      pages.add(page);
      const close = page.close.bind(page);
      page.close = () => { pages.delete(page); return close(); };
      return page;
    },
    async close() {
      await Promise.all([...pages].map((page) => page.close()));
      driver.driver.kill();
      xvfb.kill();
    },
  };
  return browser;
}
