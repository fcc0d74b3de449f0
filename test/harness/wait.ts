/** Condition polling with a deadline for tests; the same helper the dev stack uses. */
export { waitFor, WaitTimeoutError, type WaitOptions } from '../../src/dev/wait.js';
