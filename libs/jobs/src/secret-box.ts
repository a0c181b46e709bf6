import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM under a key derived from AUTH_SECRET and a purpose (so push credentials and
 * build secrets never share a key). Sealed text: `gcm:` + base64(iv ‖ tag ‖ ciphertext).
 */
export class SecretBox {
  private readonly key: Buffer | null;

  /** `secret` null: nothing can be sealed ({@link available} false). */
  constructor(secret: string | null, purpose: string) {
    this.key = secret === null ? null : createHash('sha256').update(`${purpose}:${secret}`).digest();
  }

  get available(): boolean {
    return this.key !== null;
  }

  /** @throws Error when no key is configured (callers check {@link available} and say why first). */
  seal(plain: Buffer): string {
    if (this.key === null) {
      throw new Error('no key to seal with');
    }
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const data = Buffer.concat([cipher.update(plain), cipher.final()]);
    return `gcm:${Buffer.concat([iv, cipher.getAuthTag(), data]).toString('base64')}`;
  }

  /** The plain bytes, or null for another key's, a tampered or an unsealed value. */
  open(sealed: string): Buffer | null {
    const [kind, b64] = sealed.split(':', 2);
    if (kind !== 'gcm' || this.key === null) {
      return null;
    }
    const buf = Buffer.from(b64 ?? '', 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, buf.subarray(0, 12));
      decipher.setAuthTag(buf.subarray(12, 28));
      return Buffer.concat([decipher.update(buf.subarray(28)), decipher.final()]);
    } catch {
      return null;
    }
  }
}
