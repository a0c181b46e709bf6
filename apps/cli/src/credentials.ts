import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What `stratum login` keeps for one server (the Stratum API or another registry). */
export interface StoredCredential {
  readonly username: string;
  /** An API token of API_TOKENS (sent as Bearer to Stratum), or a registry password. */
  readonly secret: string;
}

interface CredentialFile {
  servers: Record<string, StoredCredential>;
}

/**
 * `stratum login` / `logout`: credentials in `<configDir>/credentials.json`, the directory 0700
 * and the file 0600 (as docker keeps ~/.docker/config.json), written whole to a temporary file
 * and renamed, so a crash never leaves half a file. Keys are a Stratum URL
 * (`http://127.0.0.1:8080`) or a registry host (`registry.example:5000`).
 */
export class CredentialStore {
  private readonly file: string;

  constructor(private readonly dir: string) {
    this.file = join(dir, 'credentials.json');
  }

  private read(): CredentialFile {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { servers: {} };
      }
      throw err;
    }
    const parsed = JSON.parse(text) as Partial<CredentialFile>;
    return { servers: parsed.servers ?? {} };
  }

  private write(content: CredentialFile): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600); // the mode of writeFileSync is masked by the umask
    renameSync(tmp, this.file);
  }

  get(server: string): StoredCredential | null {
    return this.read().servers[server] ?? null;
  }

  set(server: string, credential: StoredCredential): void {
    const content = this.read();
    content.servers[server] = credential;
    this.write(content);
  }

  /** Returns whether there was something to remove. */
  remove(server: string): boolean {
    const content = this.read();
    if (!(server in content.servers)) {
      return false;
    }
    delete content.servers[server];
    this.write(content);
    return true;
  }
}
