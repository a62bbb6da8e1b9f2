// Times the page's default comparison (plain-20 against ResNet-20 on 5,000 Fashion-MNIST
// pictures, two epochs) on the CPU, as a user starts it: the page's Compare button with its
// defaults. Prints the time it took, the estimate it showed, the CPU threads, and how often
// the gradient chart moved.
//   node scripts/compare-time.mjs            (after scripts/build-wasm.sh; serves the repository)
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../tests/chromium.mjs';
import { serve } from '../tests/static-server.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const server = await serve(ROOT);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => /^Ready/.test(document.getElementById('notice').textContent), null, { timeout: 300000 });
  await page.selectOption('#backend-choice', 'cpu');
  await page.waitForFunction(() => document.getElementById('backend').textContent.startsWith('CPU')
    && /^Ready/.test(document.getElementById('notice').textContent), null, { timeout: 300000 });
  const threads = await page.$eval('#cpu-threads', (select) => select.options.length);
  await page.evaluate(() => {
    window.gradientChartTimes = [];
    new MutationObserver(() => window.gradientChartTimes.push(performance.now()))
      .observe(document.getElementById('compare-gradients'), { attributes: true, attributeFilter: ['data-steps'] });
  });
  const started = Date.now();
  await page.click('#compare-start');
  await page.waitForFunction(() => document.getElementById('compare-panel').dataset.finished, null, { timeout: 3600000 });
  const seconds = (Date.now() - started) / 1000;
  const shown = await page.evaluate(() => ({
    finished: document.getElementById('compare-panel').dataset.finished,
    notice: document.getElementById('compare-notice').textContent,
    estimate: document.getElementById('compare-estimate').textContent,
    times: window.gradientChartTimes,
  }));
  const gaps = shown.times.slice(1).map((t, i) => t - shown.times[i]).sort((a, b) => a - b);
  console.log(`${shown.finished} in ${seconds.toFixed(0)} s on the CPU (pool of ${threads} threads)`);
  console.log(`estimate shown: ${shown.estimate}`);
  console.log(`result: ${shown.notice}`);
  console.log(`gradient chart: ${shown.times.length} updates, median ${gaps[gaps.length >> 1]?.toFixed(0)} ms apart, `
    + `95th percentile ${gaps[Math.floor(gaps.length * 0.95)]?.toFixed(0)} ms, longest ${gaps.at(-1)?.toFixed(0)} ms`);
} finally {
  await browser.close();
  await server.close();
}
