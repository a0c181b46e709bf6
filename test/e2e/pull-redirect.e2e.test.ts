// Blob pulls through the API vs an S3 redirect (S3_REDIRECT_ENDPOINT) vs CNCF Distribution's
// fs store, in the same run: N concurrent GETs of one 100 MB blob (fetch follows the 307), wall
// time, and the API process's CPU (from /proc). With the redirect the API only answers 307s:
// its CPU per pull must be under a tenth of serving the bytes (issue 20 item 6). Figures are
// printed. Run `npm run build` first (the APIs are processes).
import { randomBytes, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, S3rverProcess, startApiProcess, startRedisServer } from '../support';
import { startDistribution } from './registry-fixtures';

const MB = 100;
const N = 20;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks (100/s)
}

async function pullAll(url: string): Promise<number> {
  const t = Date.now();
  await Promise.all(
    Array.from({ length: N }, async () => {
      const res = await fetch(url);
      if (res.status !== 200) {
        throw new Error(`${url}: ${res.status}`);
      }
      const reader = res.body!.getReader();
      for (;;) {
        const { done } = await reader.read();
        if (done) {
          break;
        }
      }
    }),
  );
  return (Date.now() - t) / 1000;
}

async function main(): Promise<void> {
  const blob = randomBytes(MB * 1024 * 1024);
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
  const redis = await startRedisServer();
  const s3 = new S3rverProcess(await freePort());
  await s3.start();
  const dist = await startDistribution();
  const work = mkdtempSync(join(tmpdir(), 'stratum-pull-bench-'));
  const apis: { name: string; url: string; pid: number; stop: () => Promise<void> }[] = [];
  try {
    for (const [name, extra] of [
      ['api (bytes through the API)', {}],
      ['api + S3 redirect', { S3_REDIRECT_ENDPOINT: s3.endpoint }],
    ] as const) {
      const port = await freePort();
      const p = await startApiProcess({
        REDIS_URL: redis.url,
        ...s3.env('bench'),
        ...extra,
        DATA_DIR: join(work, String(port)),
        API_PORT: String(port),
        MAINTENANCE_SCHEDULE: 'off',
      });
      apis.push({ name, url: `http://127.0.0.1:${port}`, pid: p.process.pid!, stop: () => p.stop() });
    }
    for (const base of [apis[0].url, `http://${dist.host}`]) {
      const r = await fetch(`${base}/v2/bench/big/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        body: blob,
        headers: { 'content-type': 'application/octet-stream' },
      });
      if (r.status !== 201) {
        // Distribution answers 202 + Location for POST ?digest= on some versions: do PUT.
        const loc = r.headers.get('location')!;
        const put = await fetch(
          `${new URL(loc, base).href}${loc.includes('?') ? '&' : '?'}digest=${digest}`,
          {
            method: 'PUT',
            body: blob,
            headers: { 'content-type': 'application/octet-stream' },
          },
        );
        if (put.status !== 201) {
          throw new Error(`upload to ${base}: ${put.status}`);
        }
      }
    }
    const rows: string[] = [];
    const cpuPerPull: number[] = [];
    for (const a of apis) {
      const cpu0 = cpuSeconds(a.pid);
      const s = await pullAll(`${a.url}/v2/bench/big/blobs/${digest}`);
      const cpu = cpuSeconds(a.pid) - cpu0;
      cpuPerPull.push(cpu / N);
      rows.push(
        `${a.name}: ${N} x ${MB} MB in ${s.toFixed(1)} s, API CPU ${cpu.toFixed(2)} s (${((cpu / N) * 1000).toFixed(0)} ms per pull)`,
      );
    }
    const ds = await pullAll(`http://${dist.host}/v2/bench/big/blobs/${digest}`);
    rows.push(`CNCF Distribution (fs store): ${N} x ${MB} MB in ${ds.toFixed(1)} s`);
    process.stdout.write(`${rows.join('\n')}\n`);
    expect(cpuPerPull[1]).toBeLessThan(cpuPerPull[0] / 10);
  } finally {
    for (const a of apis) {
      await a.stop();
    }
    await dist.stop();
    await s3.destroy();
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

jest.setTimeout(600_000);
it(`${N} concurrent pulls of a ${MB} MB blob: through the API, redirected to S3, from Distribution`, async () => {
  await main();
});
