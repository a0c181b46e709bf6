// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated
// class (main.ts does the same).
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Page } from 'playwright-core';
import request from 'supertest';
import { BuildRecord } from '@stratum/contracts';
import { busyboxContext, contextTar, pollBuild, writeTree } from '@stratum/testing';
import { HeadlessChromium, launchChromium } from '../support/chromium';
import { StackHandle, startStack } from '../support/stack';

jest.setTimeout(90_000);

const WORKER_ID = 'e2e-dashboard';
const SCREENSHOTS = resolve(__dirname, '../../test-output/dashboard');

let stack: StackHandle;
let chrome: HeadlessChromium | undefined;
let page: Page;
let pageErrors: string[] = [];

async function getBuild(id: string): Promise<BuildRecord> {
  return (await request(stack.api.url).get(`/api/v1/builds/${id}`)).body as BuildRecord;
}

function waitForState(id: string, states: string[], timeoutMs = 30_000): Promise<BuildRecord> {
  return pollBuild(stack.api.url, id, states, timeoutMs);
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Polls `check` until it holds (fails after `timeoutMs`). */
async function until(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const buildIdOf = (url: string): string => /#\/builds\/([0-9a-f-]{36})/.exec(url)?.[1] ?? '';

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  stack = await startStack({
    name: 'dashboard',
    env: {
      WORKER_ID,
      WORKER_CONCURRENCY: '2',
      WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
      GIT_ALLOW_FILE_URLS: 'true',
    },
  });
  chrome = await launchChromium({ viewport: { width: 1280, height: 900 }, timeoutMs: 20_000 });
  ({ page, pageErrors } = chrome);
});

afterAll(async () => {
  await chrome?.close();
  await stack?.stop();
});

describe('serving', () => {
  it('serves the page at / and /dashboard and its two assets, nothing else', async () => {
    for (const path of ['/', '/dashboard', '/dashboard/']) {
      const res = await request(stack.api.url).get(path);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/text\/html/);
      expect(res.text).toContain('/dashboard/app.js');
    }
    const js = await request(stack.api.url).get('/dashboard/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect((await request(stack.api.url).get('/dashboard/style.css')).headers['content-type']).toMatch(
      /text\/css/,
    );
    expect((await request(stack.api.url).get('/dashboard/index.html.bak')).status).toBe(404);
    expect((await request(stack.api.url).get('/dashboard/..%2Fdashboard.controller.ts')).status).toBe(404);
    // the registry is still where it was
    const v2 = await request(stack.api.url).get('/v2/');
    expect(v2.status).toBe(200);
    expect(v2.headers['docker-distribution-api-version']).toBe('registry/2.0');
  });

  it('GET /api/v1/queues: counts per queue and the worker online', async () => {
    const res = await request(stack.api.url).get('/api/v1/queues');
    expect(res.status).toBe(200);
    const names = (res.body.queues as { name: string }[]).map((q) => q.name);
    expect(names).toEqual(expect.arrayContaining(['build', 'commit', 'push', `commit.${WORKER_ID}`]));
    expect(res.body.workers).toEqual([WORKER_ID]);
    const build = (res.body.queues as { name: string; workers: string[]; counts: object }[]).find(
      (q) => q.name === 'build',
    );
    expect(build?.workers).toEqual([WORKER_ID]);
    expect(build?.counts).toMatchObject({ waiting: 0, active: 0, failed: 0 });
  });
});

describe('in the browser', () => {
  let firstBuild: string;

  it('submits a build through the page, shows its log live, its steps and the digest', async () => {
    await page.goto(`${stack.api.url}/`);
    await page.waitForSelector('#submit-build');
    // API_AUTH is off: no sign-in form, no sign-out control
    expect(await page.locator('#signin').count()).toBe(0);
    expect(await page.isHidden('#sign-out')).toBe(true);
    const tar = await contextTar(
      busyboxContext('RUN echo dashboard-first-line && sleep 3 && echo dashboard-second-line\n'),
    );
    await page.setInputFiles('#submit-build input[type=file]', {
      name: 'context.tar',
      mimeType: 'application/x-tar',
      buffer: tar,
    });
    await page.fill('#submit-build input[name=tags]', 'dash/hello:1');
    await page.click('#submit-build button[type=submit]');
    await page.waitForURL(/#\/builds\/[0-9a-f-]{36}$/);
    firstBuild = buildIdOf(page.url());

    // Live: the first line is on the page while the build still runs (the RUN sleeps 3 s after it).
    await page.locator('#build-log', { hasText: 'dashboard-first-line' }).waitFor();
    expect(await page.textContent('#build-state')).toBe('running');
    expect(await page.textContent('#build-log')).not.toContain('dashboard-second-line');
    expect(await page.isEnabled('#cancel-build')).toBe(true);
    expect(await page.isEnabled('#retry-build')).toBe(false);
    await shot('01-build-running');

    await page.waitForSelector('#build-state [data-state=succeeded]', { timeout: 30_000 });
    await page.locator('#image-digest', { hasText: /^sha256:[0-9a-f]{64}$/ }).waitFor();
    const record = await getBuild(firstBuild);
    expect(record.state).toBe('succeeded');
    expect(await page.textContent('#image-digest')).toBe(record.imageDigest);
    expect(await page.textContent('#build-log')).toContain('dashboard-second-line');
    // the worker (host) of each attempt
    expect(record.attemptHistory?.map((a) => a.worker)).toEqual([stack.env.WORKER_ID]);
    expect(await page.textContent('#build-workers')).toBe(`#1 ${stack.env.WORKER_ID}`);
    // one row per step, with its status; the RUN step made a layer whose size is shown
    const rows = await Promise.all(
      (await page.locator('#build-steps tbody tr').all()).map(async (tr) => ({
        status: await tr.getAttribute('data-status'),
        cells: await tr.locator('td').allTextContents(),
      })),
    );
    expect(rows).toHaveLength(record.steps.length);
    expect(rows.every((r) => r.status === 'done')).toBe(true);
    const run = rows.find((r) => r.cells[1]?.includes('RUN echo dashboard-first-line'));
    expect(run?.cells[4]).toMatch(/\d+(\.\d)? (B|KiB|MiB)/);
    expect(await page.isEnabled('#retry-build')).toBe(true);
    expect(await page.isEnabled('#cancel-build')).toBe(false);
    // the timeline: queue wait, one bar per step in order on one axis, then the image export
    const bars = await Promise.all(
      (await page.locator('#build-timeline [data-bar]').all()).map(async (el) => ({
        kind: await el.getAttribute('data-bar'),
        step: await el.getAttribute('data-step'),
        start: Number(await el.getAttribute('data-start-ms')),
        end: Number(await el.getAttribute('data-end-ms')),
      })),
    );
    expect(bars.map((b) => b.kind)).toEqual(['queue', ...record.steps.map(() => 'step'), 'export']);
    expect(bars.filter((b) => b.kind === 'step').map((b) => Number(b.step))).toEqual(
      record.steps.map((st) => st.index),
    );
    const total = Date.parse(record.finishedAt ?? '') - Date.parse(record.createdAt);
    for (const [i, b] of bars.entries()) {
      expect(b.end).toBeGreaterThanOrEqual(b.start);
      expect(b.end).toBeLessThanOrEqual(total);
      if (i > 0) {
        expect(b.start).toBeGreaterThanOrEqual(bars[i - 1].start);
      }
    }
    const runBar =
      bars[1 + record.steps.findIndex((st) => st.name.includes('RUN echo dashboard-first-line'))];
    expect(runBar.end - runBar.start).toBeGreaterThanOrEqual(3000);
    await shot('02-build-succeeded');
  });

  it('retries it: a new build of the same context, every step CACHED', async () => {
    await page.click('#retry-build');
    await page.waitForURL(
      (url) => buildIdOf(url.toString()) !== firstBuild && buildIdOf(url.toString()) !== '',
    );
    const retried = buildIdOf(page.url());
    await page.waitForSelector('#build-state [data-state=succeeded]', { timeout: 30_000 });
    const [original, again] = [await getBuild(firstBuild), await getBuild(retried)];
    expect(again).toMatchObject({
      contextDigest: original.contextDigest,
      tags: ['dash/hello:1'],
      dockerfile: 'Dockerfile',
      imageDigest: original.imageDigest,
    });
    await until(
      async () =>
        (await page.locator('#build-steps tbody tr[data-status=cached]').count()) === again.steps.length,
    );
    // shown as CACHED (the badge's text is upper-cased by the style sheet)
    expect(await page.locator('#build-steps tbody [data-state]').allTextContents()).toEqual(
      again.steps.map(() => 'cached'),
    );
    await shot('03-build-retried-cached');
  });

  it('cancels a long build from its page', async () => {
    const res = await request(stack.api.url)
      .post('/api/v1/builds')
      .set('content-type', 'application/x-tar')
      .send(await contextTar(busyboxContext('RUN echo sleeping && sleep 30\n')));
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    await page.goto(`${stack.api.url}/#/builds/${id}`);
    // wait until the RUN step runs, so the cancel kills a running container
    await page.locator('#build-log', { hasText: 'sleeping' }).waitFor();
    const started = Date.now();
    await page.click('#cancel-build');
    await page.waitForSelector('#build-state [data-state=cancelled]', { timeout: 20_000 });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect((await getBuild(id)).state).toBe('cancelled');
    expect(await page.isEnabled('#retry-build')).toBe(true);
    await shot('04-build-cancelled');
  });

  it('lists builds by state, with live counts', async () => {
    await page.goto(`${stack.api.url}/#/builds`);
    await page.waitForSelector('#builds-table tbody tr');
    await page.locator('[data-count=succeeded]', { hasText: /^succeeded 2$/ }).waitFor();
    expect(await page.textContent('[data-count=cancelled]')).toBe('cancelled 1');
    expect(await page.locator('#builds-table tbody tr').count()).toBe(3);
    await page.click('[data-count=cancelled]');
    await until(async () => (await page.locator('#builds-table tbody tr').count()) === 1);
    expect(await page.getAttribute('#builds-table tbody tr', 'data-state')).toBe('cancelled');
    // a build submitted elsewhere shows up without a reload
    await page.click('[data-count=queued]');
    await page.locator('#builds-table', { hasText: 'No builds' }).waitFor();
    await page.goto(`${stack.api.url}/#/builds`);
    const res = await request(stack.api.url)
      .post('/api/v1/builds')
      .query({ t: 'dash/later:1' })
      .set('content-type', 'application/x-tar')
      .send(await contextTar(busyboxContext('RUN echo later\n')));
    await page.waitForSelector(`#builds-table tr[data-build="${res.body.id as string}"]`);
    await waitForState(res.body.id as string, ['succeeded']);
    await page.waitForSelector(
      `#builds-table tr[data-build="${res.body.id as string}"][data-state=succeeded]`,
    );
    await shot('05-builds');
  });

  it('shows duration trends and cache hit rates per day, from the build records', async () => {
    const stats = (await request(stack.api.url).get('/api/v1/builds/stats').query({ days: 3 }).expect(200))
      .body as { days: { day: string; builds: number; p50Ms: number | null; cacheHitRate: number | null }[] };
    const today = new Date().toISOString().slice(0, 10);
    expect(stats.days.map((d) => d.day).at(-1)).toBe(today);
    expect(stats.days).toHaveLength(3);
    // every finished build of this run is today's, and counted once
    const page1 = (await request(stack.api.url).get('/api/v1/builds').query({ limit: 200 }).expect(200))
      .body as { items: BuildRecord[] };
    const finished = page1.items.filter((b) => ['succeeded', 'failed', 'cancelled'].includes(b.state));
    const day = stats.days.at(-1);
    expect(day?.builds).toBe(finished.length);
    expect(day?.p50Ms).toBeGreaterThan(0);
    // the retried build was all cached, the others not: a rate strictly between 0 and 1
    expect(day?.cacheHitRate).toBeGreaterThan(0);
    expect(day?.cacheHitRate).toBeLessThan(1);
    await request(stack.api.url).get('/api/v1/builds/stats').query({ days: 0 }).expect(400);

    // a fresh view (trends are read when the page opens, then every 30 s)
    await page.goto(`${stack.api.url}/#/builds`);
    await page.reload();
    await page.click('#builds-trends summary');
    await page.waitForSelector(`#builds-trends tr[data-day="${today}"]`);
    expect(await page.getAttribute(`#builds-trends tr[data-day="${today}"]`, 'data-builds')).toBe(
      String(finished.length),
    );
    const cells = await page.locator(`#builds-trends tr[data-day="${today}"] td`).allTextContents();
    expect(cells[6]).toBe(`${Math.round((day?.cacheHitRate ?? 0) * 100)}%`);
    await shot('05b-builds-trends');
  });

  it('shows repositories and tags, and an image with its layers and history', async () => {
    await page.goto(`${stack.api.url}/#/images`);
    await page.waitForSelector('tr[data-image="dash/hello:1"]');
    await page.click('tr[data-image="dash/hello:1"] a');
    await page.waitForSelector('#image-layers tbody tr');
    const image = (await request(stack.api.url).get(`/api/v1/images/${encodeURIComponent('dash/hello:1')}`))
      .body;
    expect(await page.textContent('#manifest-digest')).toBe(image.manifestDigest);
    expect(await page.locator('#image-layers tbody tr').count()).toBe(image.layers.length);
    expect(await page.locator('#image-history tbody tr').count()).toBe(image.history.length);
    expect(await page.textContent('#image-history')).toContain('dashboard-first-line');
    await shot('06-image');
  });

  it('shows containers and queue health', async () => {
    await page.goto(`${stack.api.url}/#/containers`);
    await page.locator('#view', { hasText: 'No containers' }).waitFor();
    await page.goto(`${stack.api.url}/#/queues`);
    await page.waitForSelector('#queues-table tr[data-queue=build]');
    expect(await page.textContent('#workers-online b')).toBe('1');
    expect(await page.textContent('#queues-table tr[data-queue=build] td:last-child')).toBe(WORKER_ID);
    expect(
      Number(await page.textContent('#queues-table tr[data-queue=build] [data-col=completed]')),
    ).toBeGreaterThanOrEqual(3);
    await shot('07-queues');
    expect(pageErrors).toEqual([]);
  });

  it('runs maintenance from its page and lists the run with what it freed', async () => {
    await page.goto(`${stack.api.url}/#/maintenance`);
    await page.locator('#view', { hasText: 'No maintenance run yet.' }).waitFor();
    await page.click('#run-gc');
    await page.locator('#gc-status', { hasText: 'succeeded' }).waitFor();
    await page.waitForSelector('#maintenance-runs tbody tr');
    const runs = (await request(stack.api.url).get('/api/v1/maintenance/runs')).body as { id: string }[];
    expect(runs).toHaveLength(1);
    const row = page.locator(`#maintenance-runs tr[data-run="${runs[0].id}"]`);
    expect(await row.locator('td').nth(1).textContent()).toBe('gc');
    expect(await row.locator('.badge').textContent()).toBe('succeeded');
    await shot('08-maintenance');
    expect(pageErrors).toEqual([]);
  });

  it('lists the audit log, filtered by action and by who', async () => {
    // Beside the builds submitted through the page (by `local`: API_AUTH is off), an anonymous
    // /v2 manifest push: dash/hello:1's manifest tagged `audited`.
    const oci = 'application/vnd.oci.image.manifest.v1+json';
    const got = await fetch(`${stack.api.url}/v2/dash/hello/manifests/1`, { headers: { accept: oci } });
    expect(got.status).toBe(200);
    const put = await fetch(`${stack.api.url}/v2/dash/hello/manifests/audited`, {
      method: 'PUT',
      headers: { 'content-type': got.headers.get('content-type') ?? oci },
      body: Buffer.from(await got.arrayBuffer()),
    });
    expect({ status: put.status, body: await put.text() }).toEqual({ status: 201, body: '' });
    const builds = (await request(stack.api.url).get('/api/v1/audit?action=build').expect(200)).body as {
      subject: string;
      target: string;
      detail: string;
    }[];
    const first = builds.find((b) => b.detail === 'dash/hello:1');
    expect(first).toMatchObject({ subject: 'local', target: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect((await getBuild(first?.target ?? '')).tags).toEqual(['dash/hello:1']);

    await page.goto(`${stack.api.url}/#/audit`);
    await page.waitForSelector('#audit-table tr[data-action=push]');
    await page.selectOption('#audit-action', 'build');
    await page.click('#audit-filter button[type=submit]');
    await until(
      async () =>
        page.url().endsWith('#/audit?action=build') &&
        (await page.locator('#audit-table tbody tr').count()) > 0 &&
        (await page.locator('#audit-table tbody tr:not([data-action=build])').count()) === 0,
    );
    expect(await page.locator('#audit-table tbody tr').count()).toBe(builds.length);
    expect(
      await page.locator(`#audit-table tr[data-action=build] td[data-col=target]`).allTextContents(),
    ).toContain(first?.target);
    await shot('09-audit-builds');
    await page.selectOption('#audit-action', '');
    await page.fill('#audit-subject', 'anonymous');
    await page.click('#audit-filter button[type=submit]');
    await until(async () => page.url().endsWith('#/audit?subject=anonymous'));
    await until(
      async () =>
        (await page.locator('#audit-table tbody tr').count()) > 0 &&
        (await page.locator('#audit-table tbody tr:not([data-subject=anonymous])').count()) === 0,
    );
    const rows = page.locator('#audit-table tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.locator('[data-col=action]').textContent()).toBe('push');
    expect(await rows.locator('[data-col=repository]').textContent()).toBe('dash/hello');
    expect(await rows.locator('[data-col=target]').textContent()).toBe('audited');
    await shot('10-audit-anonymous');
    expect(pageErrors).toEqual([]);
  });
});

describe('retry over HTTP', () => {
  it('refuses a build that is still going, and an unknown one', async () => {
    const res = await request(stack.api.url)
      .post('/api/v1/builds')
      .set('content-type', 'application/x-tar')
      .send(await contextTar(busyboxContext('RUN sleep 30\n')));
    const id = res.body.id as string;
    const early = await request(stack.api.url).post(`/api/v1/builds/${id}/retry`);
    expect(early.status).toBe(400);
    expect(early.body.message).toMatch(/still (queued|running)/);
    await request(stack.api.url).delete(`/api/v1/builds/${id}`).expect(200);
    await waitForState(id, ['cancelled']);
    const later = await request(stack.api.url).post(`/api/v1/builds/${id}/retry`);
    expect(later.status).toBe(202);
    expect(later.headers.location).toBe(`/api/v1/builds/${later.body.id as string}`);
    await request(stack.api.url)
      .delete(`/api/v1/builds/${later.body.id as string}`)
      .expect(200);
    const unknown = await request(stack.api.url).post(
      `/api/v1/builds/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}/retry`,
    );
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('BUILD_UNKNOWN');
  });
});

describe('projects in the browser', () => {
  it('shows a project build’s source, the projects page with each branch’s latest state, and its badge', async () => {
    const repo = writeTree(busyboxContext('RUN true\n'));
    const git = (args: string[]): string =>
      execFileSync('git', ['-c', 'user.name=Dash Author', '-c', 'user.email=d@example.com', ...args], {
        cwd: repo,
        encoding: 'utf8',
      }).trim();
    try {
      git(['init', '-q', '-b', 'main']);
      git(['add', '-A']);
      git(['commit', '-q', '-m', 'dashboard commit']);
      const sha = git(['rev-parse', 'HEAD']);
      await request(stack.api.url)
        .post('/api/v1/projects')
        .send({ name: 'dashproj', repoUrl: `file://${repo}`, branches: ['main'] })
        .expect(201);
      const started = await request(stack.api.url)
        .post('/api/v1/projects/dashproj/builds')
        .send({ branch: 'main' });
      expect(`${started.status} ${started.body.error}`).toBe('202 null');
      const id = started.body.buildId as string;
      await waitForState(id, ['succeeded']);

      // The builds list of the project: the source column names project, branch, commit, trigger.
      await page.goto(`${stack.api.url}/#/builds?project=dashproj&ref=refs%2Fheads%2Fmain`);
      const row = page.locator(`#builds-table tr[data-build="${id}"]`);
      await row.waitFor();
      expect(await row.locator('.source').textContent()).toBe(`dashproj main ${sha.slice(0, 7)} (manual)`);
      expect(await page.textContent('#builds-filter')).toBe('dashproj main');
      // the build page: trigger, ref, commit, author, message
      await page.goto(`${stack.api.url}/#/builds/${id}`);
      await page.locator('#build-commit', { hasText: sha.slice(0, 7) }).waitFor();
      const meta = await page.textContent('dl.meta');
      expect(meta).toContain('refs/heads/main');
      expect(meta).toContain('Dash Author');
      expect(meta).toContain('dashboard commit');

      await page.goto(`${stack.api.url}/#/projects`);
      const ref = page.locator('section[data-project=dashproj] tr[data-ref="refs/heads/main"]');
      await ref.waitFor();
      expect(await ref.getAttribute('data-state')).toBe('succeeded');
      expect(await ref.locator('td').first().textContent()).toBe('main');
      await shot('09-projects');

      // The badge is an SVG Chromium draws: 88 px wide, saying passing.
      const res = await page.goto(`${stack.api.url}/badges/dashproj/main.svg`);
      expect(res?.headers()['content-type']).toMatch(/^image\/svg\+xml/);
      const svg = page.locator('svg').first();
      const box = await svg.boundingBox();
      const drawn = { label: await svg.getAttribute('aria-label'), width: Math.round(box?.width ?? 0) };
      expect(drawn.label).toBe('build: passing');
      expect(drawn.width).toBeGreaterThan(60);
      // (fullPage screenshots of a bare SVG document hang in Chromium: the element is shot instead)
      await svg.screenshot({ path: join(SCREENSHOTS, '10-badge.png') });
      expect(pageErrors).toEqual([]);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });
});
