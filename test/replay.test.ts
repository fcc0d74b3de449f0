/**
 * Workflow determinism across versions: every history recorded from the integration tests
 * (test/histories, added to with DORMOUSE_RECORD_HISTORIES=1 npm test, never overwritten) must replay against the
 * current workflow code. A change to the command order that is not guarded by `patched()` fails here.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { HISTORIES_DIR } from './harness/history.js';

async function recorded(): Promise<{ workflowId: string; history: ReturnType<typeof historyFromJSON> }[]> {
  const files = (await readdir(HISTORIES_DIR)).filter((f) => f.endsWith('.json')).sort();
  return Promise.all(
    files.map(async (file) => ({
      workflowId: file.replace(/\.json$/, ''),
      history: historyFromJSON(JSON.parse(await readFile(join(HISTORIES_DIR, file), 'utf8'))),
    })),
  );
}

describe('recorded actor histories', () => {
  it('replay against the current workflow code', async () => {
    const histories = await recorded();
    expect(histories.length).toBeGreaterThanOrEqual(8);
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: { codePath: inject('workflowBundlePath') } },
      histories,
    )) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  });
});
