import { createHash } from 'node:crypto';
import { GitForge } from '@stratum/contracts';
import { repositoryKey } from './repo-url';
import {
  jsonDepthWithin,
  normaliseDeliveryId,
  parseWebhook,
  signWebhook,
  verifyWebhook,
  webhookCredentials,
  WebhookSignatureCheck,
} from './webhooks';

describe('webhook signatures', () => {
  const body = Buffer.from('{"ref":"refs/heads/main"}');
  it.each([GitForge.GitHub, GitForge.Gitea, GitForge.GitLab])('%s: accepts its own proof only', (forge) => {
    const proof = signWebhook(forge, 's3cret', body);
    expect(verifyWebhook(forge, 's3cret', body, proof)).toBe(true);
    expect(verifyWebhook(forge, 'other', body, proof)).toBe(false);
    expect(verifyWebhook(forge, 's3cret', body, `${proof}0`)).toBe(false);
    if (forge !== GitForge.GitLab) {
      expect(verifyWebhook(forge, 's3cret', Buffer.from(`${body.toString()} `), proof)).toBe(false);
    }
  });

  it('GitHub signatures carry the sha256= prefix (the value GitHub documents)', () => {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const proof = signWebhook(GitForge.GitHub, "It's a Secret to Everybody", Buffer.from('Hello, World!'));
    expect(proof).toBe('sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17');
  });

  it('reads each forge’s headers', () => {
    expect(
      webhookCredentials(GitForge.GitLab, {
        'x-gitlab-token': 't',
        'x-gitlab-event-uuid': 'u',
        'x-gitlab-event': 'Push Hook',
      }),
    ).toEqual({ forge: 'gitlab', proof: 't', deliveryId: 'u', event: 'Push Hook' });
    expect(webhookCredentials(GitForge.GitHub, {}).proof).toBeNull();
  });
});

describe('parseWebhook', () => {
  it('reads a GitHub push and a branch deletion', () => {
    const p = parseWebhook(GitForge.GitHub, 'push', {
      ref: 'refs/heads/main',
      after: 'a'.repeat(40),
      repository: { clone_url: 'https://github.com/o/r.git', html_url: 'https://github.com/o/r' },
    });
    expect(p).toEqual({
      kind: 'push',
      push: {
        ref: 'refs/heads/main',
        sha: 'a'.repeat(40),
        repositoryUrls: ['https://github.com/o/r.git', 'https://github.com/o/r'],
      },
    });
    const d = parseWebhook(GitForge.GitHub, 'push', {
      ref: 'refs/heads/x',
      after: '0'.repeat(40),
      deleted: true,
      repository: {},
    });
    expect(d?.kind === 'push' && d.push.sha).toBeNull();
  });

  it('reads a GitLab push', () => {
    const p = parseWebhook(GitForge.GitLab, 'Push Hook', {
      object_kind: 'push',
      ref: 'refs/heads/main',
      after: 'b'.repeat(40),
      checkout_sha: 'b'.repeat(40),
      project: { git_http_url: 'https://gitlab.example/o/r.git', git_ssh_url: 'git@gitlab.example:o/r.git' },
    });
    expect(p?.kind === 'push' && p.push.sha).toBe('b'.repeat(40));
  });

  it('calls other events other, and a malformed push null', () => {
    expect(parseWebhook(GitForge.GitHub, 'ping', { zen: 'hi' })?.kind).toBe('other');
    expect(parseWebhook(GitForge.GitHub, 'push', { ref: 1 })).toBeNull();
  });
});

describe('repositoryKey', () => {
  it('makes the URLs of one repository equal', () => {
    const keys = [
      'https://github.com/Owner/Repo.git',
      'https://GitHub.com/Owner/Repo',
      'git@github.com:Owner/Repo.git',
      'ssh://git@github.com/Owner/Repo.git',
      'https://token@github.com/Owner/Repo/',
    ].map(repositoryKey);
    expect(new Set(keys)).toEqual(new Set(['github.com/Owner/Repo']));
    expect(repositoryKey('file:///tmp/x/repo.git')).toBe('file:tmp/x/repo');
  });
});

describe('WebhookSignatureCheck', () => {
  const body = Buffer.from('{"ref":"refs/heads/main","after":"x"}');
  const feed = (check: WebhookSignatureCheck): void => {
    // In uneven chunks, as a socket delivers them.
    check.update(body.subarray(0, 5));
    check.update(body.subarray(5, 6));
    check.update(body.subarray(6));
  };

  it.each([GitForge.GitHub, GitForge.Gitea])(
    '%s: names the secrets whose HMAC of the streamed body matches',
    (forge) => {
      const check = new WebhookSignatureCheck(forge, ['one', 'two', 'two', 'three']);
      feed(check);
      expect(check.matching(signWebhook(forge, 'two', body))).toEqual(['two']);
      const other = new WebhookSignatureCheck(forge, ['one', 'three']);
      feed(other);
      expect(other.matching(signWebhook(forge, 'two', body))).toEqual([]);
    },
  );

  it('Gitea signatures are compared case-insensitively, GitHub ones exactly', () => {
    const gitea = new WebhookSignatureCheck(GitForge.Gitea, ['s']);
    feed(gitea);
    expect(gitea.matching(signWebhook(GitForge.Gitea, 's', body).toUpperCase())).toEqual(['s']);
    const github = new WebhookSignatureCheck(GitForge.GitHub, ['s']);
    feed(github);
    expect(github.matching(signWebhook(GitForge.GitHub, 's', body).toUpperCase())).toEqual([]);
  });

  it('GitLab: the token is checked without the body', () => {
    const check = new WebhookSignatureCheck(GitForge.GitLab, ['tok-a', 'tok-b']);
    expect(check.tokenMatches('tok-b')).toEqual(['tok-b']);
    expect(check.tokenMatches('tok-')).toEqual([]);
    expect(check.tokenMatches('')).toEqual([]);
  });

  it('digests the streamed body (the replay key of its content)', () => {
    const check = new WebhookSignatureCheck(GitForge.GitHub, ['s']);
    feed(check);
    expect(check.bodyDigest()).toBe(createHash('sha256').update(body).digest('hex'));
  });
});

describe('normaliseDeliveryId', () => {
  it('makes a delivery id and its upper-cased, padded copy equal', () => {
    const id = '72d3162e-cc78-11e3-81ab-4c9367dc0958';
    expect(normaliseDeliveryId(` ${id.toUpperCase()}\t`)).toBe(id);
  });
});

describe('jsonDepthWithin', () => {
  it('counts nesting outside strings only', () => {
    expect(jsonDepthWithin(Buffer.from('{"a":[1,{"b":2}]}'), 3)).toBe(true);
    expect(jsonDepthWithin(Buffer.from('{"a":[1,{"b":2}]}'), 2)).toBe(false);
    expect(jsonDepthWithin(Buffer.from('{"a":"[[[[[[[[{{{{"}'), 1)).toBe(true);
    // An escaped quote does not end the string: the brackets after it are still text.
    expect(jsonDepthWithin(Buffer.from('{"a":"\\"[[[["}'), 1)).toBe(true);
    expect(jsonDepthWithin(Buffer.from('{"a":"\\\\"}'), 1)).toBe(true);
  });

  it('refuses a megabyte of nested arrays quickly', () => {
    const deep = Buffer.from('['.repeat(1_000_000) + ']'.repeat(1_000_000));
    const t0 = process.hrtime.bigint();
    expect(jsonDepthWithin(deep, 64)).toBe(false);
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(100);
  });
});
