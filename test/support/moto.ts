import { ChildProcess, spawn, spawnSync } from 'child_process';
import { freePort } from './ports';

/**
 * moto's AWS emulator (`moto_server`, from `pip install 'moto[server]'`) on 127.0.0.1, for the EC2
 * tests: the launcher only ever sees an endpoint URL, never a real AWS one.
 */

export const MOTO_INSTALL = "pip install 'moto[server]'";

export function hasMoto(): boolean {
  return spawnSync('sh', ['-c', 'command -v moto_server'], { stdio: 'ignore' }).status === 0;
}

export interface Moto {
  url: string;
  /** Makes an IAM instance profile (moto checks that a launch's profile exists). */
  createInstanceProfile(name: string): Promise<void>;
  stop(): Promise<void>;
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const proc: ChildProcess = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
  };
  try {
    await waitForHttp(`${url}/moto-api/`, 30_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    url,
    stop,
    async createInstanceProfile(name: string) {
      // Through moto's IAM Query API (no IAM client in the package's dependencies).
      const res = await fetch(`${url}/`, {
        method: 'POST',
        body: new URLSearchParams({ Action: 'CreateInstanceProfile', InstanceProfileName: name, Version: '2010-05-08' }),
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
        },
      });
      if (res.status !== 200) throw new Error(`moto CreateInstanceProfile: HTTP ${res.status}: ${await res.text()}`);
    },
  };
}

/** Waits for an HTTP server to answer (any status). */
export { waitForHttp };
