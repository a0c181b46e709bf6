import { Worker } from 'node:worker_threads';
import { StratumError } from '@stratum/contracts';

/** Compares a password with a bcrypt hash (and makes hashes), somewhere. */
export interface PasswordHasher {
  compare(password: string, hash: string): Promise<boolean>;
  hash(password: string, cost: number): Promise<string>;
  close(): Promise<void>;
}

// The thread's whole program. Plain JavaScript evaluated by the Worker, so that it runs the same
// from dist/ and under ts-jest; bcryptjs is required by the path the API resolved.
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptjs);
parentPort.on('message', (m) => {
  try {
    const value = m.op === 'compare' ? bcrypt.compareSync(m.password, m.hash) : bcrypt.hashSync(m.password, m.cost);
    parentPort.postMessage({ id: m.id, value });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

type Task =
  | { readonly op: 'compare'; readonly password: string; readonly hash: string }
  | { readonly op: 'hash'; readonly password: string; readonly cost: number };

interface Pending {
  readonly task: Task;
  readonly resolve: (v: boolean | string) => void;
  readonly reject: (e: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  busy: Pending | null;
}

/**
 * bcrypt on worker threads. bcryptjs is pure JavaScript: on the event loop a cost-10 compare is
 * ~100-150 ms of CPU during which nothing else of the API runs (its async form only slices the
 * same work), so sixteen wrong logins stalled every other request for seconds. The native
 * `bcrypt` package would run on libuv's pool, but needs a compiler or a prebuilt binary fetched
 * from GitHub at install; bcryptjs on a few threads gives the same isolation with the dependency
 * we have. Tasks queue (bounded) when every thread is busy; threads are unref'd and started on
 * first use.
 */
export class BcryptPool implements PasswordHasher {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly threads: number,
    /** Tasks waiting beyond this are refused (the login rate limit keeps far below it). */
    private readonly maxQueue = 256,
  ) {}

  compare(password: string, hash: string): Promise<boolean> {
    return this.run({ op: 'compare', password, hash }) as Promise<boolean>;
  }

  hash(password: string, cost: number): Promise<string> {
    return this.run({ op: 'hash', password, cost }) as Promise<string>;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) {
      p.reject(new StratumError('UNAVAILABLE', 'the password checker is shutting down'));
    }
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private run(task: Task): Promise<boolean | string> {
    if (this.closed) {
      return Promise.reject(new StratumError('UNAVAILABLE', 'the password checker is shut down'));
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new StratumError('TOO_MANY_REQUESTS', 'too many logins at once; try again'));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.busy === null) ?? this.spawn();
      if (slot === null) {
        return;
      }
      const next = this.queue.shift() as Pending;
      slot.busy = next;
      slot.worker.postMessage({ id: this.nextId++, ...next.task });
    }
  }

  private spawn(): Slot | null {
    if (this.slots.length >= this.threads) {
      return null;
    }
    const worker = new Worker(THREAD_SOURCE, {
      eval: true,
      workerData: { bcryptjs: require.resolve('bcryptjs') },
    });
    worker.unref();
    const slot: Slot = { worker, busy: null };
    worker.on('message', (m: { value?: boolean | string; error?: string }) => {
      const done = slot.busy;
      slot.busy = null;
      if (m.error !== undefined) {
        done?.reject(new Error(`bcrypt: ${m.error}`));
      } else {
        done?.resolve(m.value as boolean | string);
      }
      this.dispatch();
    });
    const fail = (err: Error): void => {
      // A dead thread fails its task and is replaced on the next dispatch.
      const i = this.slots.indexOf(slot);
      if (i >= 0) {
        this.slots.splice(i, 1);
      }
      slot.busy?.reject(err);
      slot.busy = null;
      if (!this.closed) {
        this.dispatch();
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`bcrypt thread exited with ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}
