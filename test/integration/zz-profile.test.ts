import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BuildEngine } from '@stratum/build';
import { ContainerFilesystems } from '@stratum/images';
import { RuncRuntime } from '@stratum/runtime';
import { SandboxNetwork } from '../../libs/runtime/src/sandbox-network';
import { FsBlobStore, FsRepositoryStore } from '@stratum/storage';
import { buildWithEngine, busyboxContext } from '@stratum/testing';

jest.setTimeout(300_000);
const times: Record<string, number[]> = {};
function wrap(proto: any, name: string): void {
  const orig = proto[name];
  proto[name] = async function (...a: unknown[]) {
    const t = performance.now();
    try { return await orig.apply(this, a); } finally { (times[name] ??= []).push(performance.now() - t); }
  };
}
test('profile', async () => {
  const work = await mkdtemp(join(tmpdir(), 'prof-'));
  const blobs = new FsBlobStore(join(work, 'blobs'));
  const repositories = new FsRepositoryStore(join(work, 'repos'));
  for (const n of ['create', 'unmountPruned', 'snapshot', 'adoptUpper', 'remove']) wrap(ContainerFilesystems.prototype, n);
  wrap(RuncRuntime.prototype, 'run');
  for (const n of ['execute', 'forceDelete']) wrap(RuncRuntime.prototype, n);
  wrap(SandboxNetwork.prototype, 'close');
  const o = SandboxNetwork.open; (SandboxNetwork as any).open = async (...a: any[]) => { const t = performance.now(); try { return await (o as any).apply(SandboxNetwork, a); } finally { (times.netOpen ??= []).push(performance.now() - t); } };
  const engine = new BuildEngine({
    blobs, repositories,
    runtime: new RuncRuntime({ runcPath: '/usr/sbin/runc', stateRoot: join(work, 'runc'), bundleDir: join(work, 'bundles'), cgroupParent: `/stratum-prof-${process.pid}` }),
    jobsDir: join(work, 'jobs'), layerCacheDir: join(work, 'layers'), stepTimeoutMs: 60_000,
    stepNetworkDefault: (process.env.NET as 'none' | undefined) ?? 'sandbox',
  });
  const body = Array.from({ length: 10 }, (_, i) => `RUN echo ${i} > /f${i}`).join('\n');
  await buildWithEngine(engine, blobs, busyboxContext(body), { noCache: true });
  for (const k of Object.keys(times)) delete times[k];
  const t0 = performance.now();
  const r = await buildWithEngine(engine, blobs, busyboxContext(body), { noCache: true });
  const total = performance.now() - t0;
  const lines = [`total ${total.toFixed(0)} ms, steps ${r.steps.length}`];
  for (const [k, v] of Object.entries(times)) lines.push(`${k}: n=${v.length} sum=${v.reduce((a, b) => a + b, 0).toFixed(0)} avg=${(v.reduce((a, b) => a + b, 0) / v.length).toFixed(1)}`);
  console.log(lines.join('\n'));
  await rm(work, { recursive: true, force: true });
});
