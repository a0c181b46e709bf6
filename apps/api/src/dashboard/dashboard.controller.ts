import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Controller, Get, Header, NotFoundException, Param, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Response } from 'express';

/**
 * The dashboard's files: beside this module once built (`npm run build` copies static/ into
 * dist), or in the source tree when run from it (jest, ts-node). From dist/apps/api/src/dashboard
 * the repository is five levels up.
 */
export const DASHBOARD_STATIC_DIR: string =
  [join(__dirname, 'static'), resolve(__dirname, '../../../../../apps/api/src/dashboard/static')].find(
    (dir) => existsSync(join(dir, 'index.html')),
  ) ?? join(__dirname, 'static');

/** The only files served, with their types: nothing else under static/ is reachable. */
const ASSETS: Readonly<Record<string, string>> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/**
 * The web dashboard: one HTML page and its script (plain ES module, no build step), at `/` and
 * `/dashboard`. Its views are hash routes (`#/builds/<id>`), so no other path needs the page.
 */
@ApiExcludeController()
@Controller()
export class DashboardController {
  @Get(['', 'dashboard'])
  @Header('Cache-Control', 'no-cache')
  page(@Res() res: Response): void {
    res.type('text/html; charset=utf-8').sendFile(join(DASHBOARD_STATIC_DIR, 'index.html'));
  }

  @Get('dashboard/:file')
  @Header('Cache-Control', 'no-cache')
  asset(@Param('file') file: string, @Res() res: Response): void {
    const type = Object.prototype.hasOwnProperty.call(ASSETS, file) ? ASSETS[file] : undefined;
    if (type === undefined) {
      throw new NotFoundException(`no dashboard file "${file}"`);
    }
    res.type(type).sendFile(join(DASHBOARD_STATIC_DIR, file));
  }
}
