import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { StratumError } from '@stratum/contracts';
import { ProjectSecretStore, ProjectSecretsView } from './project-secret-store';
import { ProjectStore } from './project-store';

/** `PUT /api/v1/projects/:name/secrets/:id`: the value, base64. */
const SecretBodySchema = z.object({ value: z.string().base64('must be base64') });
/** `PUT /api/v1/projects/:name/ssh/:id`: the private key file(s), base64. */
const SshBodySchema = z.object({ keys: z.array(z.string().base64('must be base64')).min(1).max(8) });

function parse<S extends z.ZodType>(schema: S, body: unknown, shape: string): z.infer<S> {
  const r = schema.safeParse(body);
  if (!r.success) {
    throw new StratumError(
      'BAD_REQUEST',
      `expected ${shape}: ${r.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
    );
  }
  return r.data;
}

/** A project's secrets and deploy keys (`/api/v1/projects/:name/secrets`, `/ssh`). */
@Injectable()
export class ProjectSecretsService {
  constructor(
    private readonly projects: ProjectStore,
    private readonly secrets: ProjectSecretStore,
  ) {}

  async list(name: string): Promise<ProjectSecretsView> {
    await this.projects.require(name);
    return this.secrets.list(name);
  }

  async setSecret(name: string, id: string, body: unknown): Promise<void> {
    await this.projects.require(name);
    const { value } = parse(SecretBodySchema, body, '{"value": "<base64>"}');
    await this.secrets.setSecret(name, id, Buffer.from(value, 'base64'));
  }

  async setSsh(name: string, id: string, body: unknown): Promise<{ id: string; publicKeys: string[] }> {
    await this.projects.require(name);
    const { keys } = parse(SshBodySchema, body, '{"keys": ["<base64 private key>"]}');
    return {
      id,
      publicKeys: await this.secrets.setSsh(
        name,
        id,
        keys.map((k) => Buffer.from(k, 'base64')),
      ),
    };
  }

  async remove(name: string, kind: 'secret' | 'ssh', id: string): Promise<void> {
    await this.projects.require(name);
    if (!(await this.secrets.remove(name, kind, id))) {
      throw new StratumError(
        'SECRET_UNKNOWN',
        `project "${name}" has no ${kind === 'ssh' ? 'ssh key' : 'secret'} "${id}"`,
      );
    }
  }
}
