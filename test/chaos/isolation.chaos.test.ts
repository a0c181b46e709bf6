// What a RUN step cannot do to the host: read its files, see its processes, reach its network
// (its sandbox's connections to the host's Redis and API are refused inside its namespace),
// exhaust its pids; while the same worker keeps serving another build.
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { BuildEvent, BuildRecord } from '@stratum/contracts';
import {
  busyboxContext,
  readSse,
  RedisServerHandle,
  requireTools,
  startRedisServer,
  startWorkerProcess,
  WorkerProcessHandle,
} from '@stratum/testing';
import { listMountsUnder } from '@stratum/layers';
import { hostIpv4Addresses } from '@stratum/runtime';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { overlayMountsUnder, pollFor, submitBuild, waitForBuild } from './chaos-support';

jest.setTimeout(180_000);

let redisServer: RedisServerHandle;
let dataDir: string;
let api: ApiServerHandle;
let worker: WorkerProcessHandle;
const secretPath = `/tmp/chaos-secret-${randomBytes(6).toString('hex')}`;
const secret = `top secret ${randomBytes(8).toString('hex')}`;
const STEP_DISK_BYTES = 64 * 1024 * 1024;

// A static probe run inside a RUN step: each kernel door a container must not open, and the
// errno it got ("ok" would mean it opened). Compiled here: fixtures are made, not checked in.
const PROBE_C = `
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>
static void report(const char *what, long r) { printf("%s=%s\\n", what, r == -1 ? strerror(errno) : "ok"); }
int main(int argc, char **argv) {
  report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 1));
  report("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
  report("unshare_user", unshare(CLONE_NEWUSER));
  report("unshare_mount", unshare(CLONE_NEWNS));
  report("mount", mount("none", "/mnt", "tmpfs", 0, ""));
  report("ptrace_attach", ptrace(PTRACE_ATTACH, (pid_t)atoi(argv[1]), 0, 0));
  report("ptrace_seize", ptrace(PTRACE_SEIZE, (pid_t)atoi(argv[1]), 0, 0));
  return 0;
}
`;

function compileProbe(): Buffer {
  requireTools('gcc');
  const dir = mkdtempSync(join(tmpdir(), 'stratum-chaos-probe-'));
  try {
    writeFileSync(join(dir, 'probe.c'), PROBE_C);
    execFileSync('gcc', ['-static', '-O1', '-o', join(dir, 'probe'), join(dir, 'probe.c')]);
    return readFileSync(join(dir, 'probe'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function env(): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    DATA_DIR: dataDir,
    WORKER_ID: 'chaos-isolation',
    WORKER_CONCURRENCY: '2',
    WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
    STEP_TIMEOUT_SECONDS: '120',
    STEP_MEMORY_BYTES: String(128 * 1024 * 1024),
    STEP_PIDS_LIMIT: '256',
    STEP_DISK_BYTES: String(STEP_DISK_BYTES),
    JOB_ATTEMPTS: '1',
  };
}

async function build(
  body: string,
  tag: string,
  extra: Record<string, string | Buffer> = {},
): Promise<string> {
  const res = await submitBuild(api.url, busyboxContext(body, extra), { t: `chaos/isolation:${tag}` });
  expect(res.status).toBe(202);
  return (res.body as { id: string }).id;
}

async function logText(id: string): Promise<string> {
  const sse = await readSse(`${api.url}/api/v1/builds/${id}/logs`, { timeoutMs: 30_000 });
  return sse.frames
    .map((f) => f.data as BuildEvent)
    .map((e) => (e.type === 'log' ? e.text : e.type === 'error' ? e.message : ''))
    .join('');
}

beforeAll(async () => {
  writeFileSync(secretPath, `${secret}\n`, { mode: 0o644 });
  redisServer = await startRedisServer();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-isolation-'));
  api = await startApiServer(testConfig(env()));
  worker = await startWorkerProcess(env(), 60_000);
  // warm the layer cache so the cases below start from a cached busybox
  const id = await build('RUN true\n', 'warm');
  const warm = await waitForBuild(api.url, id, ['succeeded', 'failed'], 90_000);
  expect({ state: warm.state, error: warm.error }).toEqual({ state: 'succeeded', error: null });
});

afterAll(async () => {
  rmSync(secretPath, { force: true });
  await worker?.stop(10_000);
  await api?.close();
  await redisServer?.stop();
  if (dataDir !== undefined && overlayMountsUnder(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it('a RUN step cannot read a host file outside its root', async () => {
  const id = await build(`RUN cat ${secretPath}\n`, 'secret');
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 90_000);
  expect(rec.state).toBe('failed');
  expect(rec.error).toMatch(/exit code: 1/);
  const log = await logText(id);
  expect(log).toMatch(/No such file or directory/);
  expect(log).not.toContain(secret);
});

it('a RUN step sees only its own processes', async () => {
  const id = await build(
    "RUN n=$(ls /proc | grep -c '^[0-9][0-9]*$'); echo pids=$n; ps; test $n -lt 10\n",
    'pids',
  );
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 90_000);
  const log = await logText(id);
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  const n = Number(/pids=(\d+)/.exec(log)?.[1]);
  expect(n).toBeGreaterThan(0);
  expect(n).toBeLessThan(10);
  // no host process shows up in ps (the worker is a node process)
  expect(log).not.toMatch(/node|redis-server|systemd/);
});

it('a RUN step has only a loopback interface with --network=none, and lo + tap0 in its sandbox by default', async () => {
  const id = await build(
    'RUN --network=none sh -c \'echo ifaces=$(ls /sys/class/net | tr "\\n" " "); test "$(ls /sys/class/net)" = lo\'\n' +
      'RUN echo sandbox=$(ls /sys/class/net | tr "\\n" " ")\n',
    'net',
  );
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 90_000);
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  const log = await logText(id);
  expect(log).toMatch(/ifaces=lo *\n/);
  expect(log).toMatch(/sandbox=lo tap0 *\n/);
});

it("a sandboxed RUN step cannot reach the worker's Redis or the API, on loopback, the host's address or slirp's host alias", async () => {
  const redisPort = Number(new URL(redisServer.url).port);
  const apiPort = Number(new URL(api.url).port);
  const hostAddress = hostIpv4Addresses()[0];
  expect(hostAddress).toBeDefined();
  const targets: string[] = [];
  for (const port of [redisPort, apiPort]) {
    for (const host of ['127.0.0.1', '10.0.2.2', hostAddress]) {
      targets.push(`${host} ${port}`);
    }
  }
  // each attempt prints its target and nc's exit status: 0 would mean it connected
  // (the step is in its sandbox, with a default route out: the refusals are the rules', not a lack of network)
  const script = [
    'ip route | grep -q "^default via 10.0.2.2 dev tap0" && echo sandboxed',
    ...targets.map((t) => `echo "try ${t}"; nc -w 3 ${t} </dev/null; echo "rc=$?"`),
  ].join('; ');
  const id = await build(`RUN ${script}\n`, 'reach-host');
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 120_000);
  const log = await logText(id);
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  expect(log).toContain('sandboxed\n');
  for (const t of targets) {
    expect(log).toContain(`try ${t}\n`);
  }
  expect(log.match(/rc=0/g) ?? []).toEqual([]);
  expect(log.match(/rc=1/g)).toHaveLength(targets.length);
  // and the same ports do answer from the host itself: the refusals are the sandbox's
  for (const port of [redisPort, apiPort]) {
    await new Promise<void>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', reject);
    });
  }
  process.stdout.write(
    `chaos isolation: ${targets.length} connections from a sandboxed step to Redis/API refused\n`,
  );
});

it('from a RUN step, keyctl, unshare -U, mount and ptrace of a host process all fail', async () => {
  const hostPid = worker.process.pid;
  expect(hostPid).toBeDefined();
  const id = await build(
    `COPY probe /probe\nRUN chmod 755 /probe; /probe ${hostPid}; unshare -U true && echo cli-userns=ok || echo cli-userns=refused; ` +
      'unshare -r -m sh -c "mount -t tmpfs none /mnt" && echo cli-mount=ok || echo cli-mount=refused; ' +
      'grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status\n',
    'doors',
    { probe: compileProbe() },
  );
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 120_000);
  const log = await logText(id);
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  const results = Object.fromEntries([...log.matchAll(/^([a-z_-]+)=(.+)$/gm)].map((m) => [m[1], m[2]]));
  expect(results).toEqual({
    keyctl: 'Operation not permitted',
    add_key: 'Operation not permitted',
    unshare_user: 'Operation not permitted',
    unshare_mount: 'Operation not permitted',
    mount: 'Operation not permitted',
    // the host's processes are not in the step's PID namespace at all
    ptrace_attach: 'No such process',
    ptrace_seize: 'No such process',
    'cli-userns': 'refused',
    'cli-mount': 'refused',
  });
  expect(log).toMatch(/Seccomp:\s+2/);
  expect(log).toMatch(/NoNewPrivs:\s+1/);
  process.stdout.write(`chaos isolation: from a RUN step ${JSON.stringify(results)}\n`);
});

it('a dd disk filler is stopped at the step disk limit and the worker keeps serving', async () => {
  // 8 GiB asked for against a 64 MiB STEP_DISK_BYTES: the step is stopped on the way.
  const started = Date.now();
  const filler = await build('RUN dd if=/dev/zero of=/fill bs=1M count=8192; echo filled\n', 'dd');
  const rec = await waitForBuild(api.url, filler, ['succeeded', 'failed'], 180_000);
  const seconds = (Date.now() - started) / 1000;
  const log = await logText(filler);
  expect(rec.state).toBe('failed');
  expect(rec.error).toMatch(
    new RegExp(`RUN wrote more than the step's disk limit of ${STEP_DISK_BYTES} bytes \\(STEP_DISK_BYTES\\)`),
  );
  expect(log).not.toContain('8192+0 records out');
  expect(log).not.toContain('filled');
  // nothing of the step left on the worker's disk
  await pollFor(
    'the filler step to be cleaned up',
    () =>
      overlayMountsUnder(join(dataDir, 'worker', 'chaos-isolation', 'jobs')).length === 0 ? true : undefined,
    30_000,
  );
  const after = await build('RUN echo still serving\n', 'after-dd');
  const afterRec = await waitForBuild(api.url, after, ['succeeded', 'failed'], 120_000);
  expect({ state: afterRec.state, error: afterRec.error }).toEqual({ state: 'succeeded', error: null });
  process.stdout.write(`chaos isolation: dd filler stopped after ${seconds.toFixed(1)} s: ${rec.error}\n`);
});

it('a fork loop is stopped by the pids limit while the same worker serves another build', async () => {
  // 1000 background processes asked for, above the step pids limit (STEP_PIDS_LIMIT=256 here): forks fail,
  // the loop (in a subshell: busybox sh gives up on a failed fork) ends, and the step with it.
  const bomb = await build(
    '(i=0; while [ $i -lt 1000 ]; do sleep 60 & i=$((i+1)); done); echo loop ended\n'.replace(/^/, 'RUN '),
    'forkloop',
  );
  await waitForBuild(api.url, bomb, ['running', 'succeeded', 'failed'], 60_000);
  const other = await build('RUN echo served > /served && cat /served\n', 'neighbour');
  const otherRec = await waitForBuild(api.url, other, ['succeeded', 'failed'], 120_000);
  const bombStateThen = (
    await waitForBuild(api.url, bomb, ['queued', 'running', 'succeeded', 'failed'], 5000)
  ).state;
  expect({ state: otherRec.state, error: otherRec.error }).toEqual({ state: 'succeeded', error: null });

  const bombRec: BuildRecord = await waitForBuild(api.url, bomb, ['succeeded', 'failed'], 150_000);
  const log = await logText(bomb);
  expect(log).toMatch(/can't fork/);
  expect(log).toMatch(/loop ended/);
  expect(bombRec.state).toBe('succeeded');
  // the host is fine afterwards: nothing of the container left running
  await pollFor(
    'the fork loop container to be gone',
    () =>
      overlayMountsUnder(join(dataDir, 'worker', 'chaos-isolation', 'jobs')).length === 0 ? true : undefined,
    30_000,
  );
  process.stdout.write(
    `chaos isolation: fork loop build ${bombRec.state} (can't fork seen); neighbour build ${otherRec.state} while the loop was ${bombStateThen}\n`,
  );
});

it('a memory hog in a RUN step is stopped by the memory limit while the worker keeps serving', async () => {
  // The shell holds a 400 MB command substitution in memory, well past the 128 MiB limit.
  const hog = await build("RUN x=$(head -c 400m /dev/zero | tr '\\0' a); echo ${#x}\n", 'memhog');
  const hogRec = await waitForBuild(api.url, hog, ['succeeded', 'failed'], 120_000);
  expect(hogRec.state).toBe('failed');
  expect(hogRec.error).toMatch(/exit code: 137/);
  expect(hogRec.error).toMatch(/out of memory/);
  const after = await build('RUN echo still serving\n', 'after-hog');
  const afterRec = await waitForBuild(api.url, after, ['succeeded', 'failed'], 120_000);
  expect({ state: afterRec.state, error: afterRec.error }).toEqual({ state: 'succeeded', error: null });
});

/** Host pids whose command line is exactly `argv`. */
function pidsRunning(argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) {
      continue;
    }
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8') === want) {
        out.push(Number(name));
      }
    } catch {
      // gone
    }
  }
  return out;
}

/** `tar -tv --numeric-owner` lines of the top layer of `chaos/isolation:<tag>`, from our registry. */
async function topLayerListing(tag: string): Promise<string> {
  const accept =
    'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
  const manifest = await pollFor(
    `the manifest of chaos/isolation:${tag}`,
    async () => {
      const res = await fetch(`${api.url}/v2/chaos/isolation/manifests/${tag}`, {
        headers: { Accept: accept },
      });
      return res.ok ? ((await res.json()) as { layers: { digest: string }[] }) : undefined;
    },
    30_000,
  );
  const top = manifest.layers[manifest.layers.length - 1];
  const blob = Buffer.from(
    await (await fetch(`${api.url}/v2/chaos/isolation/blobs/${top.digest}`)).arrayBuffer(),
  );
  return execFileSync('tar', ['-tzv', '--numeric-owner'], { input: blob, encoding: 'utf8' });
}

it("a RUN step's root is an unprivileged uid on the host, and nothing of its mounts is left after it", async () => {
  // a sleep of a length no other test uses: its host pid is found by its command line
  const id = await build('RUN echo in-step-uid=$(id -u); sleep 17\n', 'userns');
  const pid = await pollFor('the step process (sleep 17)', () => pidsRunning(['sleep', '17'])[0], 60_000);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uidMap = readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/).map(Number);
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 90_000);
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  // real, effective, saved and filesystem uid: the range's root, not the host's
  expect(/^Uid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number)).toEqual([
    100000, 100000, 100000, 100000,
  ]);
  expect(/^Gid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number)).toEqual([
    100000, 100000, 100000, 100000,
  ]);
  expect(uidMap).toEqual([0, 100000, 65536]);
  expect(await logText(id)).toMatch(/in-step-uid=0\n/);
  // no overlay, idmapped attachment or tmpfs of the step stays mounted
  const jobs = join(dataDir, 'worker', 'chaos-isolation', 'jobs');
  await pollFor(
    'the step to be unmounted',
    async () => ((await listMountsUnder(jobs)).length === 0 ? true : undefined),
    30_000,
  );
  process.stdout.write(
    `chaos isolation: RUN step process ${pid} on the host: ${/^Uid:.*$/m.exec(status)?.[0]}\n`,
  );
});

it('files a RUN step writes keep their in-image owners and modes in the layer tar', async () => {
  const id = await build(
    'RUN echo r > /rootfile && echo u > /userfile && chown 1000:1000 /userfile && ' +
      'mkdir /userdir && chown 1000:1001 /userdir && cp /bin/busybox /suidfile && chmod 4755 /suidfile && ' +
      'chown 1000:1000 /home 2>/dev/null; ls -ln / | grep -E "rootfile|userfile|userdir|suidfile"\n',
    'owners',
  );
  const rec = await waitForBuild(api.url, id, ['succeeded', 'failed'], 90_000);
  expect({ state: rec.state, error: rec.error }).toEqual({ state: 'succeeded', error: null });
  const listing = await topLayerListing('owners');
  const entry = (name: string): string | undefined =>
    listing.split('\n').find((l) => l.endsWith(` ${name}`) || l.endsWith(` ${name}/`));
  expect(entry('rootfile')).toMatch(/^-rw-r--r-- 0\/0 /);
  expect(entry('userfile')).toMatch(/^-rw-r--r-- 1000\/1000 /);
  expect(entry('userdir')).toMatch(/^drwxr-xr-x 1000\/1001 /);
  expect(entry('suidfile')).toMatch(/^-rwsr-xr-x 0\/0 /);
  process.stdout.write(`chaos isolation: layer owners\n${listing}`);
});
