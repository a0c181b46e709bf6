/** What a masked secret value reads as in a step's log. */
export const MASK = '****';

/**
 * Values shorter than this are not masked: a one- or two-character secret would turn every
 * such character of the log into `****` and reveal more than it hides.
 */
export const MIN_MASKED_LENGTH = 4;

/**
 * Replaces secret values in a log stream with {@link MASK}, across chunk boundaries: the end
 * of a chunk that could be the start of a value is held back until the next chunk (or
 * {@link flush}) tells. Each value is also masked without its surrounding white space
 * (`echo $(cat /run/secrets/x)` drops a file's trailing newline).
 */
export class SecretMasker {
  private readonly values: string[];
  private pending = '';

  constructor(secrets: Iterable<string>) {
    const set = new Set<string>();
    for (const s of secrets) {
      for (const v of [s, s.trim()]) {
        if (v.length >= MIN_MASKED_LENGTH) {
          set.add(v);
        }
      }
    }
    // Longest first, so a value containing another is masked whole.
    this.values = [...set].sort((a, b) => b.length - a.length);
  }

  get active(): boolean {
    return this.values.length > 0;
  }

  /** The part of `text` (after what was held back) that can be shown now, masked. */
  push(text: string): string {
    if (this.values.length === 0) {
      return text;
    }
    let out = this.pending + text;
    for (const v of this.values) {
      out = out.split(v).join(MASK);
    }
    let hold = 0;
    for (const v of this.values) {
      for (let n = Math.min(v.length - 1, out.length); n > hold; n--) {
        if (out.endsWith(v.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    this.pending = out.slice(out.length - hold);
    return out.slice(0, out.length - hold);
  }

  /** What was held back: the stream ended, so it is no secret's start. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }
}
