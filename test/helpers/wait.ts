/**
 * Poll `cond` until it holds; throw, naming `what`, after `timeoutMs`. `what` may be a function, so
 * that the message says how things stood when the wait gave up, not when it began.
 */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string | (() => string),
  pollMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
