/**
 * Ctrl-C for long-running commands: the first SIGINT calls `onFirst` (cancel the build, stop
 * following…) and lets the command finish its own way; a second one exits at once with 130,
 * as a shell reports a SIGINT death. Returns the function that removes the handler.
 */
export function onInterrupt(onFirst: () => void): () => void {
  let count = 0;
  const handler = (): void => {
    count++;
    if (count === 1) {
      onFirst();
      return;
    }
    process.exit(130);
  };
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGINT', handler);
  };
}
