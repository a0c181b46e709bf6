import bcrypt from 'bcryptjs';
import { BcryptPool } from './bcrypt-pool';

describe('BcryptPool', () => {
  let pool: BcryptPool;
  afterEach(() => pool.close());

  it('compares and hashes on its threads', async () => {
    pool = new BcryptPool(1);
    const hash = await pool.hash('pw', 4);
    expect(bcrypt.getRounds(hash)).toBe(4);
    expect(await pool.compare('pw', hash)).toBe(true);
    expect(await pool.compare('other', hash)).toBe(false);
    // An error on the thread rejects its task, and the thread goes on serving.
    await expect(pool.compare('pw', 123 as unknown as string)).rejects.toThrow(/bcrypt: Illegal arguments/);
    expect(await pool.compare('pw', hash)).toBe(true);
  });

  it('leaves the event loop free while it hashes', async () => {
    pool = new BcryptPool(1);
    const hash = bcrypt.hashSync('pw', 10);
    // Six cost-10 compares: ~0.5-1 s of CPU, all of it on the thread.
    const work = Promise.all(Array.from({ length: 6 }, () => pool.compare('wrong', hash)));
    let worstLag = 0;
    let done = false;
    void work.then(() => (done = true));
    while (!done) {
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 10));
      worstLag = Math.max(worstLag, performance.now() - t0 - 10);
    }
    expect(await work).toEqual([false, false, false, false, false, false]);
    // Inline, each compare alone held the loop for ~100 ms or more.
    expect(worstLag).toBeLessThan(60);
  });

  it('refuses tasks past its queue bound, and everything once closed', async () => {
    pool = new BcryptPool(1, 2);
    const hash = bcrypt.hashSync('pw', 8);
    const queued = [pool.compare('a', hash), pool.compare('b', hash), pool.compare('c', hash)];
    await expect(pool.compare('d', hash)).rejects.toMatchObject({ code: 'TOO_MANY_REQUESTS' });
    await Promise.all(queued);
    await pool.close();
    await expect(pool.compare('e', hash)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
