import { StratumError } from '@stratum/contracts';
import { OciError } from '@stratum/oci';
import { StorageError } from '@stratum/storage';
import { RegistryError, toRegistryErrorResponse } from './registry-error';

describe('toRegistryErrorResponse', () => {
  it('answers the spec body for registry errors, with detail', () => {
    expect(
      toRegistryErrorResponse(new RegistryError('MANIFEST_BLOB_UNKNOWN', 'm', { missing: ['x'] })),
    ).toEqual({
      status: 400,
      headers: {},
      body: { errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'm', detail: { missing: ['x'] } }] },
      internal: false,
    });
  });

  it.each([
    [new StorageError('BLOB_UNKNOWN', 'x'), 404, 'BLOB_UNKNOWN'],
    [new StorageError('DIGEST_INVALID', 'x'), 400, 'DIGEST_INVALID'],
    [new StorageError('BLOB_TOO_LARGE', 'x'), 413, 'SIZE_INVALID'],
    [new StorageError('RANGE_INVALID', 'x'), 416, 'RANGE_INVALID'],
    [new StorageError('UNAVAILABLE', 'x'), 503, 'UNAVAILABLE'],
    [new OciError('MANIFEST_UNSUPPORTED', 'x'), 415, 'UNSUPPORTED'],
    [new OciError('REFERENCE_INVALID', 'x'), 400, 'NAME_INVALID'],
    [new StratumError('UNAUTHORIZED', 'x'), 401, 'UNAUTHORIZED'],
    [new StratumError('BUILD_UNKNOWN', 'x'), 404, 'UNSUPPORTED'],
    [new RegistryError('UNSUPPORTED', 'x', undefined, { status: 405 }), 405, 'UNSUPPORTED'],
  ])('%s -> %i %s', (err, status, code) => {
    const r = toRegistryErrorResponse(err);
    expect(r.status).toBe(status);
    expect(r.body.errors[0]?.code).toBe(code);
  });

  it('hides unexpected errors behind 500 UNKNOWN', () => {
    expect(toRegistryErrorResponse(new Error('secret path /x'))).toEqual({
      status: 500,
      headers: {},
      body: { errors: [{ code: 'UNKNOWN', message: 'internal error' }] },
      internal: true,
    });
  });
});
