import { humanSize } from './format';

/** Where progress goes: a TTY gets bars redrawn in place, anything else plain lines. */
export interface ProgressOutput {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

interface Item {
  label: string;
  status: string;
  current: number;
  total: number | null;
}

/** `[=====>      ]` of `width` characters, as docker draws its pull bars. */
export function bar(current: number, total: number, width = 40): string {
  const filled = total <= 0 ? width : Math.min(width, Math.floor((current / total) * width));
  if (filled >= width) {
    return `[${'='.repeat(width)}]`;
  }
  const done = Math.max(0, filled - 1);
  return `[${'='.repeat(done)}>${' '.repeat(width - done - 1)}]`;
}

/**
 * Docker-like progress of several items (`a1b2c3d4e5f6: Downloading [==>   ] 1.2MB/4.5MB`).
 * On a TTY every item keeps one line, redrawn in place; otherwise a line is printed only when
 * an item's status changes (no byte counts scrolling through a CI log).
 */
export class ProgressBoard {
  private readonly items = new Map<string, Item>();
  private drawn = 0;

  constructor(private readonly out: ProgressOutput) {}

  update(id: string, label: string, status: string, current = 0, total: number | null = null): void {
    const before = this.items.get(id);
    const item: Item = { label, status, current, total };
    this.items.set(id, item);
    if (this.out.isTTY === true) {
      this.redraw();
    } else if (before?.status !== status) {
      this.out.write(`${this.render(item)}\n`);
    }
  }

  private render(item: Item): string {
    const head = `${item.label}: ${item.status}`;
    const moving = item.status === 'Downloading' || item.status === 'Pushing';
    if (this.out.isTTY !== true || item.total === null || !moving) {
      return head;
    }
    return `${head} ${bar(item.current, item.total)} ${humanSize(item.current)}/${humanSize(item.total)}`;
  }

  private redraw(): void {
    let text = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    const width = (this.out.columns ?? 120) - 1;
    for (const item of this.items.values()) {
      text += `\x1b[2K${this.render(item).slice(0, width)}\n`;
    }
    this.drawn = this.items.size;
    this.out.write(text);
  }
}

/**
 * One byte counter (a context upload): on a TTY a line redrawn at most every 100 ms, otherwise
 * nothing until {@link done}, which prints the total once.
 */
export class ByteProgress {
  private last = 0;
  private count = 0;

  constructor(
    private readonly out: ProgressOutput,
    private readonly label: string,
    private readonly total: number | null = null,
  ) {}

  add(n: number): void {
    this.count += n;
    const now = Date.now();
    if (this.out.isTTY === true && now - this.last >= 100) {
      this.last = now;
      this.out.write(`\r\x1b[2K${this.line()}`);
    }
  }

  private line(): string {
    return this.total === null
      ? `${this.label} ${humanSize(this.count)}`
      : `${this.label} ${bar(this.count, this.total, 30)} ${humanSize(this.count)}/${humanSize(this.total)}`;
  }

  done(): void {
    this.out.write(
      this.out.isTTY === true
        ? `\r\x1b[2K${this.label} ${humanSize(this.count)} done\n`
        : `${this.label} ${humanSize(this.count)}\n`,
    );
  }
}
