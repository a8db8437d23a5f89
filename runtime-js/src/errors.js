// Error types of the JavaScript runtime: one line each, naming what was wrong and what was expected.

/** The bundle is missing, tampered with or not one this runtime can read. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

/** An argument or input (shape, values, options) that the runtime refuses (Python's ValueError). */
export class InputError extends Error {
  constructor(message) {
    super(message);
    this.name = 'InputError';
  }
}
