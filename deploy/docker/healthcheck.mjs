// The container's health check: exit 0 when clipsieve's /healthz answers 200, else 1.
// Plain JavaScript on purpose: the slim images have no curl or wget, and Node is there anyway.
// The port is found the way `clipsieve run` finds it: CLIPSIEVE_METRICS_PORT overrides the config
// file's metricsPort (flags are not visible from here, so a port given as a flag must also be set in
// one of those two).
import { readFileSync } from "node:fs";

const configPath = process.argv[2] ?? "/etc/clipsieve/config.json";

function metricsPort() {
  const fromEnv = process.env.CLIPSIEVE_METRICS_PORT;
  if (fromEnv) return Number(fromEnv);
  try {
    const port = JSON.parse(readFileSync(configPath, "utf8")).metricsPort;
    return port === undefined ? undefined : Number(port);
  } catch (err) {
    console.error(`healthcheck: cannot read ${configPath}: ${err.message}`);
    return undefined;
  }
}

const port = metricsPort();
if (!Number.isInteger(port) || port <= 0) {
  console.error(`healthcheck: no metricsPort in ${configPath} or CLIPSIEVE_METRICS_PORT`);
  process.exit(1);
}
try {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(4000) });
  if (!res.ok) console.error(`healthcheck: /healthz answered ${res.status}: ${await res.text()}`);
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: http://127.0.0.1:${port}/healthz: ${err.message}`);
  process.exit(1);
}
