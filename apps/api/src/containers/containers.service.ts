import { randomBytes, randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import {
  CommitState,
  ContainerChanges,
  ContainerRecord,
  ContainerState,
  Digest,
  StratumError,
} from '@stratum/contracts';
import { commandOf, ImageService, parseCommitChanges, runConfig } from '@stratum/images';
import { CommitProducer, ContainerRecordStore, KeepRecord } from '@stratum/jobs';
import { mirrorWriteConflict } from '@stratum/registry';
import { CommitAccepted, CommitContainerBody, ContainerCreated, CreateContainerBody } from './containers.dto';
import { WorkersService } from './workers.service';

/**
 * Containers as `docker run` / `docker rm` / `docker commit` see them. The API records and
 * enqueues; a builder worker runs the command and commits on its host, where the container's
 * upper dir lives.
 */
@Injectable()
export class ContainersService {
  constructor(
    @Inject(STRATUM_CONFIG) private readonly config: StratumConfig,
    private readonly records: ContainerRecordStore,
    private readonly images: ImageService,
    private readonly producer: CommitProducer,
    private readonly workers: WorkersService,
  ) {}

  /** Resolves the image now (so an unknown one is a 404 here), records, enqueues the run. */
  async create(body: CreateContainerBody): Promise<ContainerCreated> {
    if (body.network === 'host' && !this.config.allowHostNetwork) {
      throw new StratumError(
        'DENIED',
        'network "host" is not allowed on this service (an operator can enable it with ALLOW_HOST_NETWORK=true)',
      );
    }
    if (body.network === 'sandbox' && !this.config.allowSandboxNetwork) {
      throw new StratumError(
        'DENIED',
        'network "sandbox" is turned off on this service (ALLOW_SANDBOX_NETWORK=false); use "none"',
      );
    }
    const image = await this.images.resolve(body.image);
    if (image.repository === null) {
      throw new StratumError('BAD_REQUEST', `image "${body.image}" must name a repository`);
    }
    const config = runConfig(image.config, body);
    const id = randomBytes(16).toString('hex');
    const record: ContainerRecord = {
      id,
      state: ContainerState.Created,
      image: body.image,
      imageRef: `${image.repository}@${image.manifestDigest}`,
      imageDigest: image.manifestDigest as Digest,
      command: commandOf(config),
      config,
      network: body.network ?? this.config.stepNetworkDefault,
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      exitCode: null,
      signal: null,
      error: null,
      logs: { stdout: '', stderr: '', truncated: false },
      workerId: null,
      commits: [],
    };
    await this.records.create(record);
    await this.producer.runContainer({ containerId: id });
    return { id, state: record.state, url: `/api/v1/containers/${id}` };
  }

  get(id: string): Promise<ContainerRecord> {
    return this.records.require(id);
  }

  /** `docker diff`: what the worker read from the container's upper dir when it exited. */
  async changes(id: string): Promise<ContainerChanges> {
    const record = await this.records.require(id);
    if (record.state === ContainerState.Removed) {
      throw new StratumError('CONTAINER_UNKNOWN', `container ${id} was removed`);
    }
    const changes = record.changes ?? null;
    return { containerId: id, changes: changes?.items ?? null, truncated: changes?.truncated ?? false };
  }

  list(): Promise<ContainerRecord[]> {
    return this.records.list();
  }

  /**
   * `docker rm`: the record becomes a `removed` tombstone and a remove-container job on the
   * queue of the worker holding the upper dir deletes it (that worker's periodic sweep is the
   * safety net). A queued container is dropped before it runs; a running one is a 409.
   */
  async remove(id: string): Promise<ContainerRecord> {
    const current = await this.records.require(id);
    if (current.workerId !== null && current.state !== ContainerState.Removed) {
      // Its files are on that worker's host: a worker gone past the timeout will not delete them.
      await this.workers.requireReachable(current.workerId, id);
    }
    if (current.state === ContainerState.Created) {
      // Taken off the queue, it will never run; a worker that took it already sees `removed`.
      await this.producer.removeIfWaiting(`run-${id}`);
    }
    const updated = await this.records.update(id, (r) => {
      if (r.state === ContainerState.Removed) {
        throw new KeepRecord();
      }
      if (r.state === ContainerState.Running) {
        throw new StratumError('CONTAINER_STATE', `container ${id} is running; wait until it exits`);
      }
      if (r.commits.some((c) => c.state === CommitState.Queued || c.state === CommitState.Running)) {
        throw new StratumError('CONTAINER_STATE', `container ${id} is being committed; wait until that ends`);
      }
      r.state = ContainerState.Removed;
    });
    if (updated === null) {
      throw new StratumError('CONTAINER_UNKNOWN', `no container with id "${id}"`);
    }
    if (updated.workerId !== null) {
      await this.producer.removeContainer(updated.workerId, { containerId: id });
    }
    return updated;
  }

  /** `docker commit`: validates the changes now, records the commit, enqueues it. */
  async commit(id: string, body: CommitContainerBody): Promise<CommitAccepted> {
    parseCommitChanges(body.changes);
    const conflict = mirrorWriteConflict(
      body.repository,
      this.config.registryClients.mirrors.map((m) => m.prefix),
    );
    if (conflict !== null) {
      throw new StratumError('BAD_REQUEST', `tag "${body.repository}:${body.tag}": ${conflict}`);
    }
    const current = await this.records.require(id);
    if (current.workerId !== null) {
      // Only that worker can snapshot the container: refused at once when it is long gone.
      await this.workers.requireReachable(current.workerId, id);
    }
    const commitId = randomUUID();
    const updated = await this.records.update(id, (r) => {
      if (r.state !== ContainerState.Exited) {
        throw new StratumError(
          'CONTAINER_STATE',
          `container ${id} is ${r.state}; only an exited container can be committed`,
        );
      }
      r.commits.push({
        id: commitId,
        repository: body.repository,
        tag: body.tag,
        message: body.message,
        author: body.author,
        changes: body.changes,
        state: CommitState.Queued,
        imageDigest: null,
        error: null,
        createdAt: new Date().toISOString(),
        finishedAt: null,
      });
    });
    if (updated === null) {
      throw new StratumError('CONTAINER_UNKNOWN', `no container with id "${id}"`);
    }
    if (updated.workerId === null) {
      // An exited container always ran somewhere; a record without a worker was never run.
      throw new StratumError('CONTAINER_STATE', `container ${id} has no worker holding its files`);
    }
    // Only the worker holding the upper dir can snapshot it: its own queue.
    await this.producer.commit(updated.workerId, {
      containerId: id,
      commitId,
      repository: body.repository,
      tag: body.tag,
      message: body.message,
      author: body.author,
      changes: body.changes,
    });
    return { commitId, containerId: id, state: 'queued', url: `/api/v1/containers/${id}` };
  }
}
