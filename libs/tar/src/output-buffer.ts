/** Bytes gathered for a generator to yield as one Buffer once there are enough of them. */
export class OutputBuffer {
  private parts: Buffer[] = [];
  private bytes = 0;

  /** Bytes pushed since the last take(). */
  get size(): number {
    return this.bytes;
  }

  push(b: Buffer): void {
    this.parts.push(b);
    this.bytes += b.length;
  }

  /** All bytes pushed since the last take(), as one Buffer; empties the buffer. */
  take(): Buffer {
    const b = Buffer.concat(this.parts, this.bytes);
    this.parts = [];
    this.bytes = 0;
    return b;
  }
}
