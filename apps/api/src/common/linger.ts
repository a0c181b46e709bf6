import type { Request, Response } from 'express';

/** How long a refused request's connection is kept for the client to read the answer. */
export const LINGER_IDLE_MS = 2_000;
export const LINGER_MAX_MS = 10_000;

/**
 * Answers a request refused before its body was read with `Connection: close`, and closes the
 * connection as nginx's lingering close does: the answer and a FIN go out, what the client
 * still sends is read and thrown away, and the socket is destroyed when the client closes, after
 * {@link LINGER_IDLE_MS} without data, or {@link LINGER_MAX_MS} at most. Destroying it at once
 * (Node's own close) leaves the unread body in the kernel's buffer, so the close is a reset, and
 * a client still writing its body lost the answer to it before reading it (a 401 read as
 * "connection reset").
 */
export function closeAfterAnswer(req: Request, res: Response): void {
  res.setHeader('Connection', 'close');
  const socket = req.socket;
  // Node ends a `Connection: close` response's socket with destroySoon() once it is written.
  socket.destroySoon = (): void => {
    socket.end();
    const started = Date.now();
    let idle: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(idle);
      const left = LINGER_MAX_MS - (Date.now() - started);
      idle = setTimeout(() => socket.destroy(), Math.max(0, Math.min(LINGER_IDLE_MS, left)));
      idle.unref();
    };
    arm();
    req.on('data', arm);
    req.on('end', () => socket.destroy());
    socket.once('close', () => clearTimeout(idle));
    req.resume();
  };
}
