// The model trained last, kept in IndexedDB so that it survives a reload:
// {weights (burnpack bytes), input, classNames, savedAt}.
function database() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open('resnet-web', 1);
    request.onupgradeneeded = () => request.result.createObjectStore('models');
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function saveModel(model) {
  const db = await database();
  try {
    await new Promise((resolve, reject) => {
      const transaction = db.transaction('models', 'readwrite');
      transaction.objectStore('models').put(model, 'trained');
      transaction.oncomplete = resolve;
      transaction.onerror = () => reject(transaction.error);
    });
  } finally {
    db.close();
  }
}

export async function savedModel() {
  const db = await database();
  try {
    return await new Promise((resolve, reject) => {
      const request = db.transaction('models').objectStore('models').get('trained');
      request.onsuccess = () => resolve(request.result ?? null);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}
