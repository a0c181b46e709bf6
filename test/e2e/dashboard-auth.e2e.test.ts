// Decorator metadata is only recorded when reflect-metadata is loaded before any decorated
// class (main.ts does the same).
import 'reflect-metadata';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Page } from 'playwright-core';
import { BuildRecord } from '@stratum/contracts';
import { busyboxContext, contextTar } from '@stratum/testing';
import { HeadlessChromium, launchChromium } from '../support/chromium';
import { StackHandle, startStack } from '../support/stack';

// Issue 19: the dashboard under API_AUTH=true. Every /api request answers 401 without a token,
// so the page asks for one (sign-in form), keeps it in sessionStorage, sends it as a Bearer
// header on every request and on the live log stream (read with fetch: EventSource cannot send
// a header), and shows only the builds of repositories the token may pull. Real API, worker,
// Redis and headless Chromium.

jest.setTimeout(120_000);

const SCREENSHOTS = resolve(__dirname, '../../test-output/dashboard-auth');
const SECRET = 'a-dashboard-auth-secret-of-32-characters!';
const TEAM_TOKEN = 'dash-team-token-0123456789abcdef';
const OTHER_TOKEN = 'dash-other-token-0123456789abcdef';
const TOKEN_KEY = 'stratum.apiToken';

let stack: StackHandle;
let chrome: HeadlessChromium | undefined;
let page: Page;
let pageErrors: string[] = [];
let teamBuild: string;
let otherBuild: string;

async function apiAs(token: string, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${stack.api.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) },
  });
}

async function submit(token: string, tag: string, dockerfileTail: string): Promise<string> {
  const res = await apiAs(token, `/api/v1/builds?t=${tag}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-tar' },
    body: new Uint8Array(await contextTar(busyboxContext(dockerfileTail))),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function waitForState(id: string, states: string[], timeoutMs = 60_000): Promise<BuildRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = (await (await apiAs(TEAM_TOKEN, `/api/v1/builds/${id}`)).json()) as BuildRecord;
    if (states.includes(record.state) || Date.now() > deadline) {
      return record;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** The token the page keeps (sessionStorage, read in the page: this file has no DOM types). */
const storedToken = (): Promise<string | null> =>
  page.evaluate<string | null>(`sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)})`);

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  stack = await startStack({
    name: 'dashboard-auth',
    env: {
      WORKER_CONCURRENCY: '2',
      WORKER_SHUTDOWN_TIMEOUT_MS: '3000',
      API_AUTH: 'true',
      AUTH_SECRET: SECRET,
      API_TOKENS: `team:${TEAM_TOKEN},other:${OTHER_TOKEN}`,
      ACCESS_RULES: 'token:team:team/*=pull+push,token:other:other/*=pull+push',
      // Repositories private: a public one (the default) may be pulled, so its builds seen, by all.
      ANONYMOUS_PULL: 'false',
    },
  });
  chrome = await launchChromium({ viewport: { width: 1280, height: 900 }, timeoutMs: 20_000 });
  ({ page, pageErrors } = chrome);
});

afterAll(async () => {
  await chrome?.close();
  await stack?.stop();
});

it('without a token every /api request is 401, and the page shows the sign-in form', async () => {
  expect((await fetch(`${stack.api.url}/api/v1/builds`)).status).toBe(401);
  await page.goto(`${stack.api.url}/`);
  await page.waitForSelector('#signin #signin-token');
  expect(await page.locator('#builds-table').count()).toBe(0);
  expect(await page.isHidden('#signin-error')).toBe(true);
  expect(await page.isHidden('#sign-out')).toBe(true);
  // another view asks too: still the form
  await page.goto(`${stack.api.url}/#/images`);
  await page.waitForSelector('#signin #signin-token');
  await shot('01-sign-in');
});

it('a wrong token shows the API’s answer and is not kept', async () => {
  const refused = await apiAs('not-a-token-of-this-stratum', '/api/v1/builds?limit=1');
  expect(refused.status).toBe(401);
  const body = (await refused.json()) as { code: string; message: string };
  expect(body.message).toMatch(/not accepted/);
  await page.fill('#signin-token', 'not-a-token-of-this-stratum');
  await page.click('#signin button[type=submit]');
  await page.locator('#signin-error', { hasText: body.message }).waitFor();
  expect(await page.textContent('#signin-error')).toBe(`${body.code}: ${body.message}`);
  expect(await storedToken()).toBeNull();
  await shot('02-wrong-token');
});

it('the right token shows the builds it may pull, and a running build’s log streams live', async () => {
  // One build into each team's repository, both running beside each other; the team's logs a
  // line, sleeps, logs another.
  teamBuild = await submit(
    TEAM_TOKEN,
    'team/app:1',
    'RUN echo auth-first-line && sleep 4 && echo auth-second-line\n',
  );
  otherBuild = await submit(OTHER_TOKEN, 'other/app:1', 'RUN echo other-team-line\n');

  await page.goto(`${stack.api.url}/#/builds`);
  await page.waitForSelector('#signin #signin-token');
  await page.fill('#signin-token', TEAM_TOKEN);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector(`#builds-table tr[data-build="${teamBuild}"]`);
  expect(await storedToken()).toBe(TEAM_TOKEN);
  expect(await page.isVisible('#sign-out')).toBe(true);
  expect(await page.locator(`#builds-table tr[data-build="${otherBuild}"]`).count()).toBe(0);
  expect(await page.locator('#builds-table tbody tr').count()).toBe(1);

  await page.click(`#builds-table tr[data-build="${teamBuild}"] a`);
  await page.waitForURL(new RegExp(`#/builds/${teamBuild}$`));
  // Live: the first line is on the page while the build still runs (the RUN sleeps 4 s after it).
  await page.locator('#build-log', { hasText: 'auth-first-line' }).waitFor({ timeout: 60_000 });
  expect(await page.textContent('#build-state')).toBe('running');
  expect(await page.textContent('#build-log')).not.toContain('auth-second-line');
  await shot('03-live-log');
  await page.waitForSelector('#build-state [data-state=succeeded]', { timeout: 60_000 });
  await page.locator('#build-log', { hasText: 'auth-second-line' }).waitFor();
  expect(await page.getAttribute('#build-log', 'data-ended')).toBe('true');
  expect((await waitForState(teamBuild, ['succeeded'])).state).toBe('succeeded');

  // The other team's build is not there for this token: a 404, as a missing build.
  await page.goto(`${stack.api.url}/#/builds/${otherBuild}`);
  await page
    .locator('.error', { hasText: `no build with id "${otherBuild}"` })
    .first()
    .waitFor();
  expect(pageErrors).toEqual([]);
});

it('the log stream reconnects with Last-Event-ID and the Bearer header, as EventSource would', async () => {
  const logsUrl = `${stack.api.url}/api/v1/builds/${teamBuild}/logs`;
  const seen: Record<string, string>[] = [];
  await page.route(logsUrl, async (route) => {
    seen.push(route.request().headers());
    if (seen.length === 1) {
      // The first connection: one event, in CRLF lines with a comment and a two-line data, then
      // the stream ends without the build's terminal state.
      await route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream; charset=utf-8' },
        body:
          ': replayed by the test\r\nid: 1-0\r\nevent: log\r\n' +
          'data: {"type":"log","step":null,"stream":"stdout",\r\n' +
          'data: "text":"from-the-first-connection\\n"}\r\n\r\n',
      });
    } else {
      await route.continue();
    }
  });
  try {
    await page.goto(`${stack.api.url}/#/builds/${teamBuild}`);
    await page.locator('#build-log', { hasText: 'from-the-first-connection' }).waitFor();
    // after the retry delay (3 s, as Chromium's EventSource) the real stream, from after 1-0
    await page.locator('#build-log', { hasText: 'auth-second-line' }).waitFor({ timeout: 15_000 });
    expect(await page.getAttribute('#build-log', 'data-ended')).toBe('true');
    expect(seen).toHaveLength(2);
    expect(seen[0].authorization).toBe(`Bearer ${TEAM_TOKEN}`);
    expect(seen[0]['last-event-id']).toBeUndefined();
    expect(seen[1].authorization).toBe(`Bearer ${TEAM_TOKEN}`);
    expect(seen[1]['last-event-id']).toBe('1-0');
    // The two data lines were joined by a newline into one JSON object.
    expect(await page.textContent('#build-log')).toMatch(/^from-the-first-connection\n/);
  } finally {
    await page.unroute(logsUrl);
  }
  expect(pageErrors).toEqual([]);
});

it('sign-out forgets the token and returns to the form', async () => {
  await page.goto(`${stack.api.url}/#/builds`);
  await page.waitForSelector(`#builds-table tr[data-build="${teamBuild}"]`);
  await page.click('#sign-out');
  await page.waitForSelector('#signin #signin-token');
  expect(await storedToken()).toBeNull();
  expect(await page.isHidden('#sign-out')).toBe(true);
  expect(await page.isHidden('#signin-error')).toBe(true);
  // a reload stays signed out
  await page.reload();
  await page.waitForSelector('#signin #signin-token');
  await shot('04-signed-out');
  expect(pageErrors).toEqual([]);
});
