// The worker's two ways out: messages to the library (resnet-web.js), and files fetched.
import { ErrorCode, ResNetError } from '../protocol.js';

export const post = (message, transfer = []) => self.postMessage(message, transfer);

export async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ResNetError(ErrorCode.NETWORK, `cannot load ${url}: ${error.message}`);
  }
  if (!response.ok) throw new ResNetError(ErrorCode.NETWORK, `cannot load ${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}
