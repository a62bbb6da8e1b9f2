// Pictures made in the page, for tests that train in it: the page imports this module from
// the server (page.evaluate's functions cannot take a closure from the test).
//   const { rowsAndColumns, noise } = await import(new URL('tests/pictures-in-page.mjs', document.baseURI).href);

// `count` 28 px canvases of white stripes on black, rows (label 0) and columns (label 1) by
// turns, each shifted a little: {image, label} examples of two classes.
export function rowsAndColumns(count) {
  const side = 28;
  return Array.from({ length: count }, (_, i) => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = side;
    const pen = canvas.getContext('2d');
    pen.fillStyle = '#000';
    pen.fillRect(0, 0, side, side);
    pen.fillStyle = '#fff';
    for (let at = 2 + (i % 3); at < side; at += 6) (i % 2 ? pen.fillRect(at, 0, 3, side) : pen.fillRect(0, at, side, 3));
    return { image: canvas, label: i % 2 };
  });
}

// `count` 32 px colour pictures of fixed noise, labels 0 and 1 by turns: {image, label}
// examples whose content does not matter (a run's memory, not what it learns).
export function noise(count) {
  return Array.from({ length: count }, (_, i) => {
    const data = new Uint8Array(32 * 32 * 4);
    for (let j = 0; j < data.length; j++) data[j] = (i * 7919 + j * 104729) % 251;
    return { image: { data, width: 32, height: 32 }, label: i % 2 };
  });
}
