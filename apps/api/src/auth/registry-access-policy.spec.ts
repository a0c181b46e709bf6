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
