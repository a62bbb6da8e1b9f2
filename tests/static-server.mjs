// A static file server on 127.0.0.1 for the browser tests and the benchmark: a folder as it
// is, with the MIME types module scripts and wasm need, never cached, and COOP/COEP (the
// threaded wasm's shared memory needs a cross-origin isolated page) unless
// `crossOriginIsolated: false` (a static host without them). Logs nothing; `close()` stops it.
// `requested` lists the paths asked for, in order. `htmlPrelude`: a script put into every
// HTML file served, before the page's own, for a browser whose driver cannot add one
// (WebKit's WebDriver).
// As a script: `node tests/static-server.mjs ROOT PORT` serves until stopped.
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json',
  '.wasm': 'application/wasm', '.css': 'text/css', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.onnx': 'application/octet-stream', '.gz': 'application/gzip',
};
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

export async function serve(root, { crossOriginIsolated = true, port = 0, htmlPrelude = null } = {}) {
  const requested = [];
  const server = createServer((request, response) => {
    const pathname = decodeURIComponent(new URL(request.url, 'http://x').pathname);
    requested.push(pathname);
    const path = normalize(join(root, pathname));
    if (path !== root && !path.startsWith(root.endsWith(sep) ? root : root + sep)) return response.writeHead(403).end();
    let file = path;
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      const headers = {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache',
        ...(crossOriginIsolated ? ISOLATION : {}),
      };
      if (htmlPrelude && extname(file) === '.html') {
        // After the charset (within the first bytes) or the doctype (before it, the page
        // would be laid out in quirks mode), before any other script.
        const text = readFileSync(file, 'utf8');
        const mark = /<meta charset[^>]*>|<head>|^<!doctype html>/i.exec(text);
        const at = mark ? mark.index + mark[0].length : 0;
        const html = Buffer.from(`${text.slice(0, at)}<script>${htmlPrelude}</script>${text.slice(at)}`);
        return response.writeHead(200, { ...headers, 'content-length': html.length }).end(html);
      }
      response.writeHead(200, { ...headers, 'content-length': statSync(file).size });
      createReadStream(file).pipe(response);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const close = () => {
    server.closeAllConnections(); // a browser keeps its connections open
    return new Promise((resolve) => server.close(resolve));
  };
  return { url: `http://127.0.0.1:${server.address().port}/`, close, requested };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [root = '.', port = '8000'] = process.argv.slice(2);
  const { url } = await serve(resolve(root), { port: Number(port) });
  console.log(`resnet-web is served at ${url}  (cross-origin isolated; Ctrl-C stops it)`);
}
