import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { IDMAP_OPS_PY } from './idmap-ops';
import { SANDBOX_OPS_PY } from './sandbox-ops';
import { TREE_OPS_PY } from './tree-ops';

/**
 * Runs short host commands (mount, umount, du, mknod, setfattr, ...) through one long-lived
 * python3 process instead of forking this one for each.
 *
 * Why: `child_process.spawn` forks the calling process and blocks its event loop until the
 * child has exec'd. A worker holds hundreds of MB, so each fork copies that many page tables
 * and leaves the parent's pages copy-on-write; measured here, spawn() blocked a 300 MB Node
 * process 38 ms (median) on a busy 2-core host against 4 ms for a small one, and a multistage
 * build's profile showed 1.7 s of the worker's main thread in spawn() for mount and umount
 * alone. The helper is small: its forks (Python's subprocess, vfork where it can) are cheap
 * and never stop our event loop. Requests run concurrently (a thread each); each gets its own
 * cwd. Output is capped; a dead helper fails the requests in flight and is started again on
 * the next one.
 */
const HELPER = String.raw`
import base64, json, os, subprocess, sys, threading, time
lock = threading.Lock()
LIMIT = 1 << 20
def reply(msg):
    data = json.dumps(msg) + "\n"
    with lock:
        sys.stdout.write(data)
        sys.stdout.flush()
def serve(req):
    for name, op in (("idmap", idmap), ("mount", mount_op), ("sandbox", sandbox), ("tree", tree_op)):
        if name in req:
            try:
                out = json.dumps(op(req[name]) or {}).encode()
                reply({"id": req["id"], "code": 0, "stdout": base64.b64encode(out).decode(), "stderr": ""})
            except Exception as e:
                known = isinstance(e, (IdmapError, SandboxError, TreeError))
                text = str(e) if known else "%s: %s" % (type(e).__name__, e)
                reply({"id": req["id"], "code": 1, "stdout": "",
                       "stderr": base64.b64encode(text.encode()).decode()})
            return
    if "stream" in req:
        stream(req)
        return
    try:
        p = spawn(req["argv"], req.get("hide"), cwd=req.get("cwd"), stdin=subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate()
        finally:
            waited(p.pid)
        reply({"id": req["id"], "code": p.returncode,
               "stdout": base64.b64encode(out[:LIMIT]).decode(),
               "stderr": base64.b64encode(err[:LIMIT]).decode()})
    except OSError as e:
        reply({"id": req["id"], "errno": e.errno, "error": e.strerror or str(e)})
    except Exception as e:
        reply({"id": req["id"], "errno": 0, "error": repr(e)})
CLONE_NEWNS = 0x20000
MS_REC, MS_SLAVE = 0x4000, 0x80000
HOST_MNT = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
# Children a thread of ours waits for (spawned here, or a detached run's init): never taken by
# reap_orphans. Spawning and reaping hold CHILD_LOCK, so a child is known before it can end.
CHILD_LOCK = threading.Lock()
KNOWN = set()
subreaper = []
def spawn(argv, hide, **kw):
    # With hide: the command runs in a mount namespace of its own, a slave of the host's (later
    # host mounts show in it), with those mount points detached; this thread goes back to the
    # host's at once, so the copy lives only as long as the command's processes.
    if hide:
        check(libc.unshare(CLONE_NEWNS), 'unshare(CLONE_NEWNS)')
        try:
            check(libc.mount(b'none', b'/', None, MS_REC | MS_SLAVE, None), 'make / a slave mount')
            for path in hide:
                check(libc.umount2(path.encode(), MNT_DETACH), 'umount ' + path)
            with CHILD_LOCK:
                p = subprocess.Popen(argv, **kw)
                KNOWN.add(p.pid)
        finally:
            check(libc.setns(HOST_MNT, CLONE_NEWNS), 'setns (the host mount namespace)')
        return p
    with CHILD_LOCK:
        p = subprocess.Popen(argv, **kw)
        KNOWN.add(p.pid)
    return p
def waited(pid):
    with CHILD_LOCK:
        KNOWN.discard(pid)
def reap_orphans(wait_s=0.0):
    # A child subreaper is given orphans: crun's monitor of a detached run (it exits as the run
    # command does, or just after), or what a killed process left. Those named crun are reaped
    # here once they have ended, unless a thread of ours waits for them; for up to wait_s the
    # ones still running are waited for too.
    deadline = time.monotonic() + wait_s
    while True:
        running = 0
        with CHILD_LOCK:
            for task in os.listdir("/proc/self/task"):
                try:
                    with open("/proc/self/task/%s/children" % task) as f:
                        pids = [int(x) for x in f.read().split()]
                except OSError:
                    continue
                for pid in pids:
                    if pid in KNOWN:
                        continue
                    try:
                        with open("/proc/%d/stat" % pid) as f:
                            stat = f.read()
                    except OSError:
                        continue
                    if stat[stat.index("(") + 1:stat.rindex(")")] != "crun":
                        continue
                    if stat[stat.rindex(")") + 2:].startswith("Z"):
                        try:
                            os.waitpid(pid, os.WNOHANG)
                        except ChildProcessError:
                            pass
                    else:
                        running += 1
        if running == 0 or time.monotonic() >= deadline:
            return
        time.sleep(0.001)
def stream(req):
    rid = req["id"]
    init = req["stream"].get("initPidFile")
    try:
        if init and not subreaper:
            check(libc.prctl(36, 1, 0, 0, 0), 'prctl(PR_SET_CHILD_SUBREAPER)')
            subreaper.append(True)
        p = spawn(req["argv"], req.get("hide"), stdin=subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        reply({"id": rid, "errno": e.errno, "error": e.strerror or str(e)})
        return
    reply({"id": rid, "event": "pid", "pid": p.pid})
    done = threading.Event()
    def pump(pipe, fd):
        try:
            while not done.is_set():
                data = os.read(pipe.fileno(), 65536)
                if not data or done.is_set():
                    return
                reply({"id": rid, "event": "data", "fd": fd, "data": base64.b64encode(data).decode()})
        except OSError:
            pass
        finally:
            pipe.close()
    pumps = [threading.Thread(target=pump, args=(p.stdout, 1), daemon=True),
             threading.Thread(target=pump, args=(p.stderr, 2), daemon=True)]
    for t in pumps:
        t.start()
    try:
        code = p.wait()
    finally:
        waited(p.pid)
    if init:
        # once the init was handed to us crun's monitor has ended; if not, it may still be ending
        handed = False
        if code == 0:
            code, handed = wait_init(rid, init)
        reap_orphans(0 if handed else 0.5)
    # a stray holder of the pipes (a process the command left) must not hold the reply forever
    deadline = time.monotonic() + req["stream"]["drainMs"] / 1000.0
    for t in pumps:
        t.join(max(0.0, deadline - time.monotonic()))
    done.set()
    reply({"id": rid, "code": code, "stdout": "", "stderr": ""})
def wait_init(rid, pid_file):
    # The command (crun run --detach) exited once its container's init started. crun forks
    # twice: the init's parent is a process of crun's that exits right after it; an orphan,
    # it is ours (reaped by reap_orphans), and so is the init then: its status is the run's.
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        with CHILD_LOCK:
            KNOWN.add(pid)
    except (OSError, ValueError) as e:
        reply({"id": rid, "event": "data", "fd": 2, "data": base64.b64encode(("no container init to wait for: %s\n" % e).encode()).decode()})
        return 255, False
    try:
        reply({"id": rid, "event": "pid", "pid": pid})
        for _ in range(10000):
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                # not ours yet: crun's process above it has not ended
                reap_orphans()
                time.sleep(0.001)
        else:
            raise OSError(10, "the container init %d never became the helper's child" % pid)
        code = os.waitstatus_to_exitcode(status)
        return (128 - code if code < 0 else code), True  # as runc reports a killed init: 128+n
    except OSError as e:
        reply({"id": rid, "event": "data", "fd": 2, "data": base64.b64encode(("no container init to wait for: %s\n" % e).encode()).decode()})
        return 255, False
    finally:
        waited(pid)
${IDMAP_OPS_PY}
${SANDBOX_OPS_PY}
${TREE_OPS_PY}
for line in sys.stdin:
    threading.Thread(target=serve, args=(json.loads(line),), daemon=True).start()
`;

/**
 * The python3 the worker's root helpers run on: Debian's, by absolute path. Not looked up in
 * PATH: a root helper must not run whatever a PATH entry calls python3, and a version manager's
 * shim there (pyenv's is a bash script) made every idmapped mount ~250 ms slower here.
 */
export const HOST_PYTHON = '/usr/bin/python3';

/** How a command run through the helper ended. `code` is negative for a signal (-9: SIGKILL). */
export interface HelperResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** The command could not be started (`code` as Node's spawn errors: ENOENT, EACCES, ...). */
export class HelperSpawnError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HelperSpawnError';
  }
}

const ERRNO_NAMES: Record<number, string> = { 2: 'ENOENT', 13: 'EACCES', 8: 'ENOEXEC', 20: 'ENOTDIR' };

interface Pending {
  resolve: (r: HelperResult) => void;
  reject: (e: Error) => void;
  events?: StreamHandlers;
}

/**
 * Mount points a command must not see: it runs in a mount namespace of its own (a slave of the
 * host's: later host mounts still show) with each of them detached. crun refuses a hybrid
 * cgroup host whose cgroup2 mount holds a controller (`/sys/fs/cgroup/unified`); hidden, the
 * host is plain cgroup v1 to it.
 */
export interface HiddenMounts {
  hide?: readonly string[];
}

function hideField(hide: readonly string[] | undefined): { hide?: readonly string[] } {
  return hide !== undefined && hide.length > 0 ? { hide } : {};
}

/** What {@link ExecHelper.stream} reports while its command runs. */
export interface StreamHandlers {
  /**
   * The command's pid, once it started (before any output); with `initPidFile`, called again
   * with the container init's pid once the command has exited and left it running.
   */
  onPid(pid: number): void;
  onStdout(chunk: Buffer): void;
  onStderr(chunk: Buffer): void;
}

export class ExecHelper {
  private child: ChildProcessWithoutNullStreams | null = null;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;

  constructor(private readonly python = HOST_PYTHON) {}

  /**
   * Runs `argv` to completion (stdin /dev/null), in `cwd` when given; with `hide`, in a mount
   * namespace of its own where those mount points are detached (see {@link HiddenMounts}).
   */
  exec(argv: readonly string[], options: { cwd?: string } & HiddenMounts = {}): Promise<HelperResult> {
    return this.send({
      argv,
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...hideField(options.hide),
    });
  }

  /**
   * Runs `argv` (stdin /dev/null) and streams its output as it comes; resolves when it has
   * exited and its output ended (or `drainMs` after its exit, when a process it left holds
   * the pipes), with `code` negative for a signal and empty stdout/stderr (they went to
   * `handlers`). The helper's pipe to us is shared: a slow handler slows every request.
   * With `initPidFile` the command is a runtime's `run --detach --pid-file F`: when it exits 0
   * the helper (a child subreaper from then on) waits for the pid F names, and that process's
   * status is the result; the pipes the command handed it stream on.
   */
  stream(
    argv: readonly string[],
    handlers: StreamHandlers,
    options: { drainMs: number; initPidFile?: string } & HiddenMounts,
  ): Promise<HelperResult> {
    return this.send(
      {
        argv,
        stream: {
          drainMs: options.drainMs,
          ...(options.initPidFile !== undefined ? { initPidFile: options.initPidFile } : {}),
        },
        ...hideField(options.hide),
      },
      handlers,
    );
  }

  /** An idmapped-mount request (idmap-ops.ts) done by the helper itself; code 1 and stderr on failure. */
  idmap(request: unknown): Promise<HelperResult> {
    return this.send({ idmap: request });
  }

  /** A mount-syscall request (`mount_op` in idmap-ops.ts) done by the helper itself; code 1 and stderr on failure. */
  mount(
    request:
      | { op: 'umount'; target: string; lazy?: boolean }
      | { op: 'overlay'; cwd: string; target: string; options: string }
      | { op: 'sysfs'; netns: string; target: string },
  ): Promise<HelperResult> {
    return this.send({ mount: request });
  }

  /** A tree walk (tree-ops.ts) done by the helper itself: its reply as JSON on stdout (code 0), or code 1 and why on stderr. */
  tree(
    request: { op: 'xattrs' | 'du'; root: string; limit: number } | { op: 'opaque'; paths: string[] },
  ): Promise<HelperResult> {
    return this.send({ tree: request });
  }

  /**
   * A sandbox-network request (sandbox-ops.ts) done by the helper itself: its reply as JSON on
   * stdout (code 0), or code 1 and why on stderr.
   */
  sandbox(request: unknown): Promise<HelperResult> {
    return this.send({ sandbox: request });
  }

  private send(request: object, events?: StreamHandlers): Promise<HelperResult> {
    const child = this.started();
    const id = ++this.seq;
    return new Promise<HelperResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...(events !== undefined ? { events } : {}) });
      child.stdin.write(`${JSON.stringify({ id, ...request })}\n`);
      // Kept alive only while something waits on it.
      setRef(child, true);
    });
  }

  /** Ends the helper (requests in flight fail). */
  stop(): void {
    this.child?.kill('SIGKILL');
    this.child = null;
  }

  /** The helper's PID, once started (tests). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  private started(): ChildProcessWithoutNullStreams {
    if (this.child !== null) {
      return this.child;
    }
    const child = spawn(this.python, ['-I', '-S', '-u', '-c', HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    const stderr: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 64) {
        stderr.push(b);
      }
    });
    child.stdin.on('error', () => undefined); // a dead helper: 'exit' below fails the requests
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => this.answer(line));
    const fail = (why: string): void => {
      if (this.child === child) {
        this.child = null;
      }
      const err = new Error(
        `the exec helper (${this.python}) ${why}: ${Buffer.concat(stderr).toString().trim()}`,
      );
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(err);
      }
    };
    child.on('error', (e: NodeJS.ErrnoException) =>
      fail(
        e.code === 'ENOENT' ? 'is not installed (Debian package python3)' : `could not start: ${e.message}`,
      ),
    );
    child.on('exit', (code, signal) => fail(`exited (${code ?? signal ?? 'unknown'})`));
    setRef(child, false);
    return child;
  }

  private answer(line: string): void {
    let msg: {
      id: number;
      code?: number;
      stdout?: string;
      stderr?: string;
      errno?: number;
      error?: string;
      event?: 'pid' | 'data';
      pid?: number;
      fd?: number;
      data?: string;
    };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    const p = this.pending.get(msg.id);
    if (p === undefined) {
      return;
    }
    if (msg.event !== undefined) {
      // a streamed command's progress; its end comes as a normal reply
      if (msg.event === 'pid' && msg.pid !== undefined) {
        p.events?.onPid(msg.pid);
      } else if (msg.event === 'data') {
        const chunk = Buffer.from(msg.data ?? '', 'base64');
        if (msg.fd === 2) {
          p.events?.onStderr(chunk);
        } else {
          p.events?.onStdout(chunk);
        }
      }
      return;
    }
    this.pending.delete(msg.id);
    if (this.pending.size === 0 && this.child !== null) {
      setRef(this.child, false);
    }
    if (msg.errno !== undefined) {
      p.reject(
        new HelperSpawnError(ERRNO_NAMES[msg.errno] ?? `errno ${msg.errno}`, msg.error ?? 'cannot start'),
      );
      return;
    }
    p.resolve({
      code: msg.code ?? -1,
      stdout: Buffer.from(msg.stdout ?? '', 'base64'),
      stderr: Buffer.from(msg.stderr ?? '', 'base64'),
    });
  }
}

/** Whether the helper (its process and pipes) keeps this process's event loop alive. */
function setRef(child: ChildProcessWithoutNullStreams, on: boolean): void {
  for (const handle of [child, child.stdin, child.stdout, child.stderr] as unknown as {
    ref(): void;
    unref(): void;
  }[]) {
    if (on) {
      handle.ref();
    } else {
      handle.unref();
    }
  }
}

/** This process's helper. */
export const execHelper = new ExecHelper();
