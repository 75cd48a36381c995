/**
 * kafkajs 2.2.4 (the client the design card names; its last release) computes some request-queue
 * timeouts as negative numbers, which Node.js >= 23 reports as a TimeoutNegativeWarning on every run
 * (the timer then fires at once, as kafkajs meant). The warning says nothing an operator can act on,
 * so it is dropped here; every other warning passes through untouched. Imported first by the CLI.
 */
const emitWarning = process.emitWarning.bind(process);

process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const first = rest[0];
  const type = typeof first === "string" ? first : (first as { type?: string } | undefined)?.type;
  if (
    type === "TimeoutNegativeWarning" ||
    (warning instanceof Error && warning.name === "TimeoutNegativeWarning")
  )
    return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;
