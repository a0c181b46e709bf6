import { ImageTransfer } from './image-transfer';
import { RegistryClients } from './registry-clients';
import { RemoteImageResolver } from './remote-image-resolver';

// Where a FROM pull goes, without a network: the name Docker would pull and the places in order.
describe('RemoteImageResolver: names and places', () => {
  const transfer = {} as ImageTransfer;
  const resolver = new RemoteImageResolver(
    transfer,
    new RegistryClients({ insecureHosts: ['reg.lan:5000'] }),
    {
      defaultRegistry: 'docker.io',
      pullMirrors: [
        { registry: 'docker.io', urls: ['http://127.0.0.1:5001', 'https://mirror.example'] },
        { registry: 'reg.lan:5000', urls: ['https://m.lan'] },
      ],
    },
  );

  it.each([
    ['busybox', 'docker.io', 'library/busybox', 'latest'],
    ['team/base:1', 'docker.io', 'team/base', '1'],
    ['reg.lan:5000/x/y:t', 'reg.lan:5000', 'x/y', 't'],
    ['index.docker.io/alpine:3', 'docker.io', 'library/alpine', '3'],
  ])('%s is %s/%s:%s', (ref, registry, repository, tag) => {
    expect(resolver.qualify(ref)).toMatchObject({ registry, repository, tag });
  });

  it('tries the mirrors of the registry in order, then the registry itself', () => {
    expect(resolver.endpoints('docker.io').map((e) => `${e.kind} ${e.client.baseUrl}`)).toEqual([
      'mirror http://127.0.0.1:5001',
      'mirror https://mirror.example',
      'registry https://registry-1.docker.io',
    ]);
    // REGISTRY_INSECURE (insecure-registries) makes the registry itself plain HTTP.
    expect(resolver.endpoints('reg.lan:5000').map((e) => `${e.kind} ${e.client.baseUrl}`)).toEqual([
      'mirror https://m.lan',
      'registry http://reg.lan:5000',
    ]);
    expect(resolver.endpoints('quay.io').map((e) => e.client.baseUrl)).toEqual(['https://quay.io']);
  });

  it('keeps unqualified names to our registry when there is no default registry', async () => {
    const local = new RemoteImageResolver(transfer, new RegistryClients(), { defaultRegistry: null });
    expect(local.unqualifiedRegistry).toBeNull();
    expect(local.qualify('busybox')).toBeNull();
    expect(local.qualify('ghcr.io/o/i')).toMatchObject({ registry: 'ghcr.io', repository: 'o/i' });
    await expect(local.resolve('busybox')).rejects.toMatchObject({ code: 'NAME_UNKNOWN' });
  });

  it('defaults to Docker Hub, as Docker', () => {
    const hub = new RemoteImageResolver(transfer, new RegistryClients());
    expect(hub.unqualifiedRegistry).toBe('docker.io');
    expect(hub.qualify('alpine')).toMatchObject({ registry: 'docker.io', repository: 'library/alpine' });
  });
});
