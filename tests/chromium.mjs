// Headless Chromium as the page tests, the memory script and the benchmark start it: the
// system's Chromium (no browser download), WebGPU on (SwiftShader where there is no GPU),
// a fake camera that needs no permission prompt, and no traffic of its own.
import { chromium } from 'playwright-core';

export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROME_BIN ?? '/usr/bin/chromium',
    args: [
      '--enable-unsafe-webgpu', '--no-sandbox', '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--no-first-run', ...extraArgs,
    ],
  });
}
