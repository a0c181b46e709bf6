// The exec helper: a real python3 process running real commands.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecHelper, HelperSpawnError } from './exec-helper';
import { run } from './host-tools';

describe('ExecHelper (python3)', () => {
  let helper: ExecHelper;
  let dir: string;

  beforeAll(async () => {
    helper = new ExecHelper();
    dir = await mkdtemp(join(tmpdir(), 'stratum-exec-helper-'));
    await writeFile(join(dir, 'f'), 'x'.repeat(5000));
  });

  afterAll(async () => {
    helper.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a command in its cwd and returns its exit code, stdout and stderr apart', async () => {
    const r = await helper.exec(['sh', '-c', 'pwd; ls; echo oops >&2; exit 3'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stdout.toString()).toBe(`${dir}\nf\n`);
    expect(r.stderr.toString()).toBe('oops\n');
  });

  it('runs requests at once: a slow one does not hold up a fast one', async () => {
    const started = Date.now();
    const slow = helper.exec(['sleep', '1']);
    const fast = await helper.exec(['du', '-sb', join(dir, 'f')]);
    expect(Date.now() - started).toBeLessThan(900);
    expect(fast.stdout.toString()).toMatch(/^5000\t/);
    expect((await slow).code).toBe(0);
  });

  it('binary output comes back byte for byte; a signal is a negative code', async () => {
    const r = await helper.exec(['head', '-c', '256', '/dev/urandom']);
    expect(r.stdout.length).toBe(256);
    expect((await helper.exec(['sh', '-c', 'kill -9 $$'])).code).toBe(-9);
  });

  it('stream: the pid first, then stdout and stderr as they come (before the exit), then the exit code', async () => {
    const events: string[] = [];
    let pid = 0;
    const out: Buffer[] = [];
    const done = helper.stream(
      ['sh', '-c', 'echo one; echo err >&2; sleep 0.5; head -c 200000 /dev/zero; exit 4'],
      {
        onPid: (p) => {
          pid = p;
          events.push('pid');
        },
        onStdout: (c) => {
          out.push(c);
          if (events.at(-1) !== 'out') {
            events.push('out');
          }
        },
        onStderr: (c) => events.push(`err:${c.toString()}`),
      },
      { drainMs: 5000 },
    );
    // the first line arrives while the command still runs
    for (let i = 0; i < 40 && out.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(Buffer.concat(out).toString()).toBe('one\n');
    expect(pid).toBeGreaterThan(1);
    const r = await done;
    expect(r.code).toBe(4);
    expect(events[0]).toBe('pid');
    expect(events).toContain('err:err\n');
    expect(Buffer.concat(out).length).toBe(4 + 200000);
  });

  it('stream: a signal is a negative code; a process left holding the pipes does not hold the end past drainMs', async () => {
    const killed = helper.stream(['sh', '-c', 'kill -9 $$'], noEvents, { drainMs: 5000 });
    expect((await killed).code).toBe(-9);
    const started = Date.now();
    const left = await helper.stream(['sh', '-c', '(sleep 3 &) ; echo bye'], noEvents, { drainMs: 300 });
    expect(left.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('a missing program is an ENOENT HelperSpawnError; host-tools run() maps it to LAYER_TOOL_MISSING', async () => {
    await expect(helper.exec(['/nonexistent/tool'])).rejects.toMatchObject({
      name: HelperSpawnError.name,
      code: 'ENOENT',
    });
    await expect(run('no-such-tool-stratum', [])).rejects.toMatchObject({ code: 'LAYER_TOOL_MISSING' });
    await expect(run('false', [])).rejects.toMatchObject({ code: 'LAYER_TOOL_FAILED' });
    expect((await run('false', [], { allowFail: true })).code).toBe(1);
  });

  it('a helper that dies fails the requests in flight, and the next request starts a new one', async () => {
    const first = helper.pid;
    const inFlight = helper.exec(['sleep', '5']);
    await new Promise((r) => setTimeout(r, 200));
    process.kill(first as number, 'SIGKILL');
    await expect(inFlight).rejects.toThrow(/exec helper .* exited/);
    const again = await helper.exec(['echo', 'back']);
    expect(again.stdout.toString()).toBe('back\n');
    expect(helper.pid).not.toBe(first);
  });

  it('without python3 every request fails naming the package', async () => {
    const none = new ExecHelper('/nonexistent/python3');
    await expect(none.exec(['true'])).rejects.toThrow('Debian package python3');
  });
});

const noEvents = { onPid: () => undefined, onStdout: () => undefined, onStderr: () => undefined };
