// Issue 20 item 4: while object storage is down the dashboard says so on every page, from
// /healthz; the banner goes away once the store answers again. A real s3rver in a child process
// (SIGKILLed for the outage, restarted on the same port and directory), the API in process,
// the dashboard in headless Chromium.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Page } from 'playwright-core';
import { freePort, RedisServerHandle, S3rverProcess, startRedisServer } from '@stratum/testing';
import { ApiServerHandle, startApiServer, testConfig } from '../support/api-server';
import { HeadlessChromium, launchChromium } from '../support/chromium';

jest.setTimeout(120_000);

let redisServer: RedisServerHandle;
let s3: S3rverProcess;
let dataDir: string;
let api: ApiServerHandle;
let chrome: HeadlessChromium | undefined;
let page: Page;
let pageErrors: string[] = [];

beforeAll(async () => {
  redisServer = await startRedisServer();
  s3 = new S3rverProcess(await freePort());
  await s3.start();
  dataDir = mkdtempSync(join(tmpdir(), 'stratum-chaos-banner-'));
  api = await startApiServer(
    testConfig({
      REDIS_URL: redisServer.url,
      DATA_DIR: dataDir,
      WORKER_ID: 'chaos-banner',
      STORAGE: 's3',
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: 'S3RVER',
      S3_SECRET_KEY: 'S3RVER',
      S3_BUCKET: 'stratum-banner',
    }),
  );
  chrome = await launchChromium();
  ({ page, pageErrors } = chrome);
});

afterAll(async () => {
  await chrome?.close();
  await api?.close();
  await s3?.destroy();
  await redisServer?.stop();
  if (dataDir !== undefined) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

it('shows an outage banner on every page while object storage is down, and hides it after', async () => {
  const banner = page.locator('#outage');
  await page.goto(`${api.url}/#/builds`);
  await page.locator('#view h1').first().waitFor();
  // Healthy: the banner stays hidden over a few health polls.
  await page.waitForTimeout(4000);
  expect(await banner.isHidden()).toBe(true);

  const downAt = Date.now();
  await s3.stop();
  await banner.waitFor({ state: 'visible', timeout: 30_000 });
  const shownAfter = Date.now() - downAt;
  const text = await banner.innerText();
  expect(text).toContain('Outage: object storage does not answer');
  expect(text).toContain('Queued builds wait and keep their attempts');
  expect(text).not.toContain('Redis');

  // On another page too (the banner is outside the views).
  await page.goto(`${api.url}/#/queues`);
  await banner.waitFor({ state: 'visible', timeout: 30_000 });

  const upAt = Date.now();
  await s3.start();
  await banner.waitFor({ state: 'hidden', timeout: 30_000 });
  const hiddenAfter = Date.now() - upAt;
  expect(pageErrors).toEqual([]);
  process.stdout.write(
    `dashboard outage banner: shown ${shownAfter} ms after the store went down, hidden ${hiddenAfter} ms after it came back\n`,
  );
});
