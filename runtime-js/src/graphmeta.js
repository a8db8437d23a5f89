// The metadata the exporter stamps into each graph (ONNX ModelProto.metadata_props), read from the
// graph's bytes, and the check that the manifest agrees with it: manifest.json carries no sha256 of its
// own, and a hand-edited one (another scale, likelihood or latent size) would otherwise run with numbers
// its graphs were not exported with. The same entries as the Python runtime's check_graphs
// (runtime/contract.py: exact_metadata, META_NUMBERS, META_VARIANT_METHOD); onnxruntime-node and -web expose no metadata, so
// the few protobuf fields needed are walked here.
import { BundleError } from './errors.js';
import { shorten } from './manifest.js';

const METADATA_PROPS = 14; // ModelProto field: repeated StringStringEntryProto {key = 1, value = 2}
const utf8 = new TextDecoder('utf-8');

/** A protobuf varint at bytes[pos]: [value, next position]; values here fit a double exactly. */
function varint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= bytes.length) throw new RangeError('varint runs past the end');
    const b = bytes[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new RangeError('varint longer than 10 bytes');
}

/** Each top-level field of a message: [field number, wire type, value bytes (length-delimited) or null]. */
function* fields(bytes) {
  let pos = 0;
  while (pos < bytes.length) {
    let key;
    [key, pos] = varint(bytes, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      [, pos] = varint(bytes, pos);
      yield [field, wire, null];
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      yield [field, wire, null];
    } else if (wire === 2) {
      let length;
      [length, pos] = varint(bytes, pos);
      if (pos + length > bytes.length) throw new RangeError('a field runs past the end');
      yield [field, wire, bytes.subarray(pos, pos + length)];
      pos += length;
    } else {
      throw new RangeError(`wire type ${wire}`);
    }
  }
  if (pos !== bytes.length) throw new RangeError('the last field runs past the end');
}

/**
 * The graph's metadata_props as a Map (key -> value).
 * @param {Uint8Array} bytes an ONNX model
 * @returns {Map<string, string>}
 */
export function readMetadata(bytes) {
  const meta = new Map();
  for (const [field, wire, value] of fields(bytes)) {
    if (field !== METADATA_PROPS || wire !== 2) continue;
    let key = '';
    let text = '';
    for (const [f, w, v] of fields(value)) {
      if (w !== 2) continue;
      if (f === 1) key = utf8.decode(v);
      else if (f === 2) text = utf8.decode(v);
    }
    meta.set(key, text);
  }
  return meta;
}

/** JSON values equal: numbers by value, objects key for key, arrays element for element. */
function sameJson(a, b) {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameJson(v, b[i]));
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].every((k) => sameJson(a[k], b[k]));
  }
  return a === b;
}

const BASE_VARIANT = 'fp32';
const AUTO = 'auto';

/**
 * The variant a graph was made as, stamped by the exporter ('vae_edge.variant_method'; fp32 graphs carry
 * none), against the one the manifest names it as: an int8 graph listed as fp32, or the reverse, is
 * refused. For "auto", each graph is checked as the variant its `from` entry names (the score graph of a
 * mixed pair as one composed from them), as the Python runtime's check_graphs does.
 */
function checkMethod(meta, manifest, precision, graph, where) {
  const entry = manifest.variants[precision];
  let madeAs = precision;
  let method = entry.method;
  if (precision === AUTO) {
    const sources = entry.from !== null && typeof entry.from === 'object' ? entry.from : {};
    const distinct = [...new Set(Object.values(sources))];
    madeAs = sources[graph] ?? (distinct.length === 1 ? distinct[0] : AUTO);
    if (madeAs !== AUTO && !Object.hasOwn(manifest.variants, madeAs)) {
      throw new BundleError(`${where}: the ${precision} variant names no known variant for its ${graph} graph (${shorten(madeAs)})`);
    }
    method = madeAs === AUTO ? undefined : manifest.variants[madeAs]?.method;
  }
  const stamped = meta.get('vae_edge.variant_method');
  if (madeAs === BASE_VARIANT) {
    if (stamped !== undefined) throw new BundleError(`${where}: is a derived variant (${shorten(stamped)}), not the ${BASE_VARIANT} graph the manifest names it as`);
    return;
  }
  if (stamped === undefined) {
    throw new BundleError(`${where}: carries no variant method; it is not an ${madeAs} graph (an ${BASE_VARIANT} graph named as ${madeAs}?)`);
  }
  if (typeof method === 'string' && !method.startsWith(stamped)) {
    throw new BundleError(`${where}: was made by ${shorten(stamped)}, the manifest's ${madeAs} variant says ${shorten(method)}`);
  }
}

/**
 * Refuse a manifest that disagrees with what the graph was exported with.
 * @param {Uint8Array} bytes the graph's ONNX bytes (verified against the manifest's sha256)
 * @param {object} manifest
 * @param {string} where the graph's name, for the message
 * @param {string} [precision] the variant loaded, and [graph] the graph's role in it: checks the variant method too
 * @param {string} [graph]
 */
export function checkGraphMetadata(bytes, manifest, where, precision = undefined, graph = undefined) {
  let meta;
  try {
    meta = readMetadata(bytes);
  } catch (err) {
    throw new BundleError(`${where}: not an ONNX model this runtime can read the metadata of (${err.message})`);
  }
  const exact = {
    'vae_edge.latent_dim': String(manifest.model.latent_dim),
    'vae_edge.input_shape': JSON.stringify(manifest.data.shape).replaceAll(',', ', '),
    'vae_edge.likelihood': manifest.model.likelihood,
  };
  for (const [key, value] of Object.entries(exact)) {
    if (meta.has(key) && meta.get(key) !== value) throw new BundleError(`${where}: carries ${key}=${shorten(meta.get(key))}, the manifest says ${value}`);
  }
  const numbers = { 'vae_edge.preprocessing': ['data', 'preprocessing'], 'vae_edge.likelihood_params': ['model', 'likelihood_params'] };
  for (const [key, [section, field]] of Object.entries(numbers)) {
    if (!meta.has(key)) continue;
    let stamped;
    try {
      stamped = JSON.parse(meta.get(key));
    } catch {
      throw new BundleError(`${where}: metadata ${key} is not JSON`);
    }
    const stated = manifest[section]?.[field];
    if (!sameJson(stamped, stated)) {
      throw new BundleError(`${where}: was exported with ${field} ${shorten(stamped)}, the manifest says ${shorten(stated)}`);
    }
  }
  if (precision !== undefined) checkMethod(meta, manifest, precision, graph, where);
}
