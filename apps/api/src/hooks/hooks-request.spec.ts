import { Readable } from 'node:stream';
import { ByteBudget, readRawBody } from './hooks-request.middleware';

function stream(
  chunks: Buffer[],
  headers: Record<string, string> = {},
): Readable & { headers: Record<string, string> } {
  return Object.assign(Readable.from(chunks), { headers });
}

describe('readRawBody', () => {
  const kib = (n: number): Buffer => Buffer.alloc(n * 1024, 'x');

  it('reads a body within the cap, showing every chunk, and holds its size of the budget', async () => {
    const budget = new ByteBudget(100 * 1024);
    const seen: number[] = [];
    const { body, held } = await readRawBody(stream([kib(1), kib(2)]), {
      maxBytes: 4 * 1024,
      budget,
      onChunk: (c) => seen.push(c.length),
    });
    expect({ size: body.length, held, seen, inUse: budget.inUse }).toEqual({
      size: 3072,
      held: 3072,
      seen: [1024, 2048],
      inUse: 3072,
    });
  });

  it('refuses a declared Content-Length past the cap before reading anything', async () => {
    const src = stream([kib(1)], { 'content-length': String(10 * 1024) });
    const seen: number[] = [];
    await expect(
      readRawBody(src, {
        maxBytes: 4 * 1024,
        budget: new ByteBudget(1e9),
        onChunk: (c) => seen.push(c.length),
      }),
    ).rejects.toMatchObject({ code: 'WEBHOOK_TOO_LARGE' });
    expect(seen).toEqual([]);
  });

  it('stops at the chunk that passes the cap, gives its budget back and leaves the rest unread', async () => {
    const budget = new ByteBudget(1e9);
    let pulled = 0;
    const src = Object.assign(
      new Readable({
        read() {
          pulled++;
          this.push(pulled > 1000 ? null : kib(1));
        },
      }),
      { headers: {} },
    );
    await expect(
      readRawBody(src, { maxBytes: 8 * 1024, budget, onChunk: () => undefined }),
    ).rejects.toMatchObject({
      code: 'WEBHOOK_TOO_LARGE',
    });
    expect(budget.inUse).toBe(0);
    // A few chunks of read-ahead, not the 1000 the source would give.
    expect(pulled).toBeLessThan(40);
    expect(src.destroyed).toBe(false);
  });

  it('answers UNAVAILABLE when the bodies in flight would pass the budget', async () => {
    const budget = new ByteBudget(6 * 1024);
    expect(budget.take(4 * 1024)).toBe(true);
    await expect(
      readRawBody(stream([kib(1), kib(2)]), { maxBytes: 1e9, budget, onChunk: () => undefined }),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(budget.inUse).toBe(4 * 1024);
  });
});
