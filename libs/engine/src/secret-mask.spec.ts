import { MASK, SecretMasker } from './secret-mask';

describe('SecretMasker', () => {
  it('masks every occurrence, also without surrounding white space', () => {
    const m = new SecretMasker(['tok-1234\n']);
    expect(m.push('a tok-1234\nb tok-1234 c\n') + m.flush()).toBe(`a ${MASK}b ${MASK} c\n`);
  });

  it('masks a value split across chunks, holding back only what could start one', () => {
    const m = new SecretMasker(['abcdefgh']);
    const out = [m.push('xx abc'), m.push('def'), m.push('gh yy'), m.flush()];
    expect(out.join('')).toBe(`xx ${MASK} yy`);
    expect(out[0]).toBe('xx ');
    const plain = new SecretMasker(['abcdefgh']);
    expect(plain.push('nothing like it\n')).toBe('nothing like it\n');
  });

  it('a held-back start that turns out not to be the value is shown at the end', () => {
    const m = new SecretMasker(['abcdefgh']);
    expect(m.push('ends with abc')).toBe('ends with ');
    expect(m.flush()).toBe('abc');
  });

  it('the longer of two overlapping values is masked whole; very short values are not masked', () => {
    const m = new SecretMasker(['pass', 'password123', 'ab']);
    expect(m.push('password123 pass ab') + m.flush()).toBe(`${MASK} ${MASK} ab`);
    expect(new SecretMasker(['ab']).active).toBe(false);
  });
});
