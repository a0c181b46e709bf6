import { ContainerFilesystems, ContainerFs, LayerDescriptor } from '@stratum/images';
import { EXPORT_HOLD_MAX_MS, LayerExports } from './layer-export';

// The step-first schedule of the pipelined layer export: an export waits for the next step's
// container to start (nudge), at most EXPORT_HOLD_MAX_MS, and not at all once the steps are over.
const filesystems = {
  useFrozenLayer: () => undefined,
  forgetFrozenLayer: () => undefined,
} as unknown as ContainerFilesystems;
const fs = (id: string): ContainerFs => ({ id, upper: `/nowhere/${id}` }) as unknown as ContainerFs;
const stored = (id: string): LayerDescriptor => ({
  digest: `sha256:${id.padEnd(64, '0')}`,
  diffId: `sha256:${id.padEnd(64, '0')}`,
  size: 1,
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
});
const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function exporter(): { exports: LayerExports; started: string[]; add: (id: string) => LayerDescriptor } {
  const exports = new LayerExports(filesystems, 2);
  const started: string[] = [];
  const add = (id: string): LayerDescriptor =>
    exports.add(fs(id), async () => {
      started.push(id);
      return stored(id);
    });
  return { exports, started, add };
}

it('holds an export until the next container starts', async () => {
  const { exports, started, add } = exporter();
  const placeholder = add('a');
  await tick(20);
  expect(started).toEqual([]);
  exports.nudge();
  await tick(0);
  expect(started).toEqual(['a']);
  expect(await exports.resolve([placeholder])).toEqual([stored('a')]);
});

it('starts it anyway after EXPORT_HOLD_MAX_MS without a container', async () => {
  const { started, add } = exporter();
  add('b');
  await tick(EXPORT_HOLD_MAX_MS / 2);
  expect(started).toEqual([]);
  await tick(EXPORT_HOLD_MAX_MS);
  expect(started).toEqual(['b']);
});

it('once the steps are over (resolve, finish or drain), nothing waits', async () => {
  const { exports, started, add } = exporter();
  const first = add('c');
  const layers = await exports.resolve([first]); // opens the gate: c starts at once
  expect(layers).toEqual([stored('c')]);
  add('d');
  await tick(0);
  expect(started).toEqual(['c', 'd']);
  await exports.finish(async () => undefined);
});
