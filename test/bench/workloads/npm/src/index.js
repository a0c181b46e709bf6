'use strict';
// The bench workload's application: loads every dependency (so a broken install fails the
// build's self-test step) and prints one line.
const express = require('express');
const pino = require('pino');
const { z } = require('zod');
const dayjs = require('dayjs');
const _ = require('lodash');
const axios = require('axios');
const { v4: uuid } = require('uuid');
const yargs = require('yargs');

const Config = z.object({ port: z.number().int().positive() });
const config = Config.parse({ port: Number(process.env.PORT ?? 8080) });
const log = pino({ level: 'info' });
const app = express();
app.get('/', (_req, res) => res.json({ id: uuid(), at: dayjs().toISOString() }));

if (process.argv.includes('--selftest')) {
  const ok = [express, pino, z, dayjs, _, axios, uuid, yargs].every(Boolean);
  process.stdout.write(`${ok ? 'ok' : 'broken'} ${_.size(Config.shape)} ${config.port}\n`);
} else {
  app.listen(config.port, () => log.info({ port: config.port }, 'listening'));
}
