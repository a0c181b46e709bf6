import { LogTail } from './log-tail';

describe('LogTail', () => {
  it('keeps everything under the limit', () => {
    const t = new LogTail(10);
    t.write(Buffer.from('abc'));
    t.write(Buffer.from('def'));
    expect(t.text()).toBe('abcdef');
    expect(t.truncated).toBe(false);
  });

  it('keeps the last bytes once over the limit', () => {
    const t = new LogTail(5);
    t.write(Buffer.from('abc'));
    t.write(Buffer.from('defgh'));
    t.write(Buffer.from('ij'));
    expect(t.text()).toBe('fghij');
    expect(t.truncated).toBe(true);
  });
});
