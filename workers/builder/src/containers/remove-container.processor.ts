import { Injectable, Logger } from '@nestjs/common';
import { Job, UnrecoverableError } from 'bullmq';
import {
  CONTAINER_ID,
  ContainerState,
  JobName,
  RemoveContainerJobData,
  RemoveContainerJobResult,
} from '@stratum/contracts';
import { ContainerFilesystems } from '@stratum/images';
import { ContainerRecordStore } from '@stratum/jobs';
import { JobHandler } from '../job-handler';

/**
 * `remove-container` jobs, on this worker's own queue: deletes the files (upper dir) of a
 * container the user removed. Only a record that is gone or says `removed` loses its files;
 * deleting what is already gone is a no-op, so a retry is harmless.
 */
@Injectable()
export class RemoveContainerProcessor implements JobHandler<typeof JobName.RemoveContainer> {
  readonly name = JobName.RemoveContainer;
  private readonly logger = new Logger('RemoveContainerProcessor');

  constructor(
    private readonly records: ContainerRecordStore,
    private readonly filesystems: ContainerFilesystems,
  ) {}

  async handle(
    job: Job<RemoveContainerJobData, RemoveContainerJobResult, typeof JobName.RemoveContainer>,
  ): Promise<RemoveContainerJobResult> {
    const id = job.data.containerId;
    if (!CONTAINER_ID.test(id)) {
      throw new UnrecoverableError(`invalid container id "${id}"`);
    }
    const record = await this.records.get(id);
    if (record !== null && record.state !== ContainerState.Removed) {
      return { containerId: id, removed: false };
    }
    await this.filesystems.remove(this.filesystems.describe(id, []));
    this.logger.log(`removed the files of container ${id} (remove-container job)`);
    return { containerId: id, removed: true };
  }
}
