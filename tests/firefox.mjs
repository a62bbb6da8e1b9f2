// Headless Firefox as the Firefox tests start it: Debian's firefox-esr (no browser download),
// driven by puppeteer-core over WebDriver BiDi, with a fake camera that needs no permission
// prompt, and the viewport of the Chromium tests.
import puppeteer from 'puppeteer-core';

export function launchFirefox() {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX_BIN ?? '/usr/bin/firefox-esr',
    headless: true,
    // Playwright's default, which the page tests' layouts were drawn in.
    defaultViewport: { width: 1280, height: 720 },
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
    },
  });
}
