/** Condition polling with a deadline for tests; the same helper the dev stack uses. */
export { waitFor, WaitTimeoutError, type WaitOptions } from '../../dev/wait.js';
