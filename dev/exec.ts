/** Running a short-lived tool (the Temporal CLI, python3, pip) with a bound on its duration. */
import { execFile } from 'node:child_process';

export interface CommandResult {
  /** Exit code, or null if the command was killed. */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs `file args` to completion or until `timeoutMs` passes (then SIGKILL), in `env` (default:
 * this process's environment). Resolves with the outcome whatever the exit code; rejects only
 * when the command cannot be started at all.
 */
export function runCommand(
  file: string,
  args: readonly string[],
  options: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        cwd: options.cwd,
        env: options.env,
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code === 'string') {
          reject(new Error(`cannot run ${file}: ${err.message}`, { cause: err }));
          return;
        }
        const timedOut = err?.killed === true;
        const exitCode = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ exitCode, stdout, stderr, timedOut });
      },
    );
  });
}

/** "`temporal operator …` exited with code 1: <last lines of its output>", for error messages. */
export function describeFailure(file: string, args: readonly string[], result: CommandResult): string {
  const command = [file, ...args].join(' ');
  const how = result.timedOut ? 'timed out' : `exited with code ${result.exitCode}`;
  const output = lastLines(`${result.stderr}\n${result.stdout}`, 20);
  return `\`${command}\` ${how}${output ? `:\n${output}` : ''}`;
}

export function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n');
}
