import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSecrets } from './main';

describe('parseSecrets (stratum build --secret, as docker build)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stratum-cli-secret-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads src= files, env= variables and a bare id as the variable of that name', () => {
    writeFileSync(join(dir, 'npmrc'), 'file-value\n');
    const s = parseSecrets([`id=npmrc,src=${join(dir, 'npmrc')}`, 'id=tok,env=TOKEN', 'id=GH_TOKEN'], {
      TOKEN: 'env-value',
      GH_TOKEN: 'gh',
    });
    expect([...s].map(([k, v]) => [k, v.toString()])).toEqual([
      ['npmrc', 'file-value\n'],
      ['tok', 'env-value'],
      ['GH_TOKEN', 'gh'],
    ]);
  });

  it('fails clearly: no id, an unset variable, an unknown field, a file over 500 KiB', () => {
    expect(() => parseSecrets(['src=/x'], {})).toThrow(/id= is required/);
    expect(() => parseSecrets(['id=tok,env=NOPE'], {})).toThrow(/NOPE is not set/);
    expect(() => parseSecrets(['id=a,colour=red'], {})).toThrow(/unknown field "colour"/);
    writeFileSync(join(dir, 'big'), Buffer.alloc(500 * 1024 + 1));
    expect(() => parseSecrets([`id=big,src=${join(dir, 'big')}`], {})).toThrow(/larger than 512000 bytes/);
  });
});
