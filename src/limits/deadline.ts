/**
 * A deadline that does not fire early when the process was busy: when the timer comes due, the
 * callback waits one more turn of the event loop (`setImmediate`), after the poll phase, so that a
 * Redis reply which arrived while the loop was stalled is read and counted first. Without that, a
 * loop stalled for longer than the timeout (a loaded machine, a long GC) would time out calls whose
 * answers were already there, and the store would fall back or trip for nothing.
 */
export function deadline(ms: number, onDue: () => void): () => void {
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => {
    immediate = setImmediate(onDue);
  }, ms);
  return () => {
    clearTimeout(timer);
    if (immediate !== undefined) clearImmediate(immediate);
  };
}
