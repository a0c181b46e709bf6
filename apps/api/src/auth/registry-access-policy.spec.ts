import { CredentialVerifier, parseBasic } from './credential-verifier';
import { RegistryAccessPolicy } from './registry-access-policy';
import bcrypt from 'bcryptjs';

describe('RegistryAccessPolicy', () => {
  const pull = (name: string) => ({ type: 'repository', name, actions: ['pull', 'push'] });

  it('grants anonymous pull by the first matching rule, else the default; signed-in users everything', () => {
    const policy = new RegistryAccessPolicy({
      anonymousPull: false,
      repositoryAccess: [
        { pattern: 'public/secret*', access: 'private' },
        { pattern: 'public/*', access: 'public' },
      ],
    });
    expect(policy.grant(null, [pull('public/app'), pull('public/secret'), pull('team/app')])).toEqual([
      { type: 'repository', name: 'public/app', actions: ['pull'] },
    ]);
    expect(
      policy.grant({ subject: 'a', kind: 'user' }, [
        pull('team/app'),
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ]),
    ).toEqual([pull('team/app'), { type: 'registry', name: 'catalog', actions: ['*'] }]);
    expect(
      new RegistryAccessPolicy({ anonymousPull: true, repositoryAccess: [] }).isPublic('any/thing'),
    ).toBe(true);
  });
});

describe('RegistryAccessPolicy with ACCESS_RULES', () => {
  const policy = new RegistryAccessPolicy({
    anonymousPull: false,
    repositoryAccess: [{ pattern: 'public/*', access: 'public' }],
    accessRules: [
      { subject: 'alice', pattern: 'team/*', actions: ['pull', 'push', 'delete'] },
      { subject: 'bob', pattern: 'team/*', actions: ['pull'] },
      { subject: 'token:ci', pattern: 'ci/*', actions: ['push'] },
      { subject: '*', pattern: 'shared/*', actions: ['pull'] },
      { subject: 'root', pattern: '*', actions: ['pull'] },
    ],
  });
  const bob = { subject: 'bob', kind: 'user' } as const;
  const ci = { subject: 'token:ci', kind: 'token' } as const;

  it('grants per subject and pattern, plus pull where public and for every signed-in subject on *', () => {
    expect(policy.actionsFor({ subject: 'alice', kind: 'user' }, 'team/app')).toEqual([
      'pull',
      'push',
      'delete',
    ]);
    expect(policy.actionsFor(bob, 'team/app')).toEqual(['pull']);
    expect(policy.actionsFor(bob, 'team')).toEqual([]);
    expect(policy.actionsFor(bob, 'public/x')).toEqual(['pull']);
    expect(policy.actionsFor(bob, 'shared/lib')).toEqual(['pull']);
    expect(policy.actionsFor(ci, 'ci/app')).toEqual(['push']);
    expect(policy.actionsFor({ subject: 'ci', kind: 'user' }, 'ci/app')).toEqual([]);
    expect(policy.actionsFor(null, 'team/app')).toEqual([]);
    expect(policy.actionsFor(null, 'public/x')).toEqual(['pull']);
  });

  it('grants the part of the requested scopes the rules allow; the catalog only with pull on *', () => {
    expect(
      policy.grant(bob, [
        { type: 'repository', name: 'team/app', actions: ['pull', 'push', '*'] },
        { type: 'repository', name: 'other/app', actions: ['pull'] },
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ]),
    ).toEqual([{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    expect(
      policy.grant({ subject: 'root', kind: 'user' }, [
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ]),
    ).toEqual([{ type: 'registry', name: 'catalog', actions: ['*'] }]);
  });
});

describe('CredentialVerifier', () => {
  it('checks bcrypt and plain passwords, and API tokens as passwords', async () => {
    const v = new CredentialVerifier({
      users: [
        { username: 'alice', password: bcrypt.hashSync('pw1', 4) },
        { username: 'bob', password: 'pw2' },
      ],
      apiTokens: [{ name: 'ci', token: 'token-0123456789abcdef' }],
    });
    expect(await v.verifyPassword('alice', 'pw1')).toEqual({ subject: 'alice', kind: 'user' });
    expect(await v.verifyPassword('alice', 'pw2')).toBeNull();
    expect(await v.verifyPassword('bob', 'pw2')).toEqual({ subject: 'bob', kind: 'user' });
    expect(await v.verifyPassword('x', 'token-0123456789abcdef')).toEqual({
      subject: 'token:ci',
      kind: 'token',
    });
    expect(parseBasic(`Basic ${Buffer.from('u:p:q').toString('base64')}`)).toEqual({
      username: 'u',
      password: 'p:q',
    });
    expect(parseBasic('Bearer x')).toBeNull();
  });
});

describe('CredentialVerifier timing', () => {
  /** Records each compare's hash cost instead of hashing. */
  function countingHasher() {
    const costs: number[] = [];
    return {
      costs,
      hasher: {
        compare: (_pw: string, hash: string) => {
          costs.push(bcrypt.getRounds(hash));
          return Promise.resolve(false);
        },
        hash: (pw: string, cost: number) => Promise.resolve(bcrypt.hashSync(pw, cost)),
        close: () => Promise.resolve(),
      },
    };
  }

  it('an unknown user and a plain-password user cost one compare at the highest configured cost', async () => {
    const { costs, hasher } = countingHasher();
    const v = new CredentialVerifier(
      {
        users: [
          { username: 'alice', password: bcrypt.hashSync('pw1', 4) },
          { username: 'carol', password: bcrypt.hashSync('pw3', 6) },
          { username: 'bob', password: 'pw2' },
        ],
        apiTokens: [],
      },
      hasher,
    );
    expect(await v.verifyPassword('nobody', 'x')).toBeNull();
    expect(await v.verifyPassword('bob', 'x')).toBeNull();
    expect(await v.verifyPassword('carol', 'x')).toBeNull();
    expect(costs).toEqual([6, 6, 6]);
  });

  it('hashes nothing when no user has a bcrypt hash', async () => {
    const { costs, hasher } = countingHasher();
    const v = new CredentialVerifier(
      { users: [{ username: 'bob', password: 'pw2' }], apiTokens: [] },
      hasher,
    );
    expect(await v.verifyPassword('nobody', 'x')).toBeNull();
    expect(await v.verifyPassword('bob', 'pw2')).toEqual({ subject: 'bob', kind: 'user' });
    expect(costs).toEqual([]);
  });

  it('unknown and known names take about as long with real bcrypt', async () => {
    const v = new CredentialVerifier({
      users: [{ username: 'alice', password: bcrypt.hashSync('pw1', 8) }],
      apiTokens: [],
    });
    const time = async (user: string): Promise<number> => {
      const t0 = performance.now();
      await v.verifyPassword(user, 'wrong');
      return performance.now() - t0;
    };
    await time('nobody'); // the dummy hash is made on first use
    const median = async (user: string): Promise<number> => {
      const t: number[] = [];
      for (let i = 0; i < 5; i++) {
        t.push(await time(user));
      }
      return t.sort((a, b) => a - b)[2];
    };
    const known = await median('alice');
    const unknown = await median('nobody');
    // Before: ~3 ms unknown vs ~80 ms known (cost 10); now both one cost-8 compare.
    expect(unknown / known).toBeGreaterThan(0.5);
    expect(unknown / known).toBeLessThan(2);
  });
});
