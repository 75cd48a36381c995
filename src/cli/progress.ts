/**
 * Progress for long commands: a bar on a terminal (cli-progress), plain lines every few seconds
 * otherwise (logs, CI), on stderr so stdout stays the command's own output.
 */
import { Presets, SingleBar } from "cli-progress";

export interface Progress {
  /** `done` units so far; `note` (say, the item just finished) ends the plain line and follows the bar. */
  update(done: number, note?: string): void;
  stop(): void;
}

export function createProgress(opts: {
  label: string;
  total: number;
  /** What is counted (default "records"). */
  unit?: string;
  /** "auto" (default: a bar on a terminal, lines otherwise), "bar", "lines" or "none". */
  mode?: string;
  /** Least time between plain lines (default 5000; 0: a line for every update). */
  lineEveryMs?: number;
}): Progress {
  const unit = opts.unit ?? "records";
  const mode =
    opts.mode === "auto" || opts.mode === undefined ? (process.stderr.isTTY ? "bar" : "lines") : opts.mode;
  const started = Date.now();
  const rate = (done: number) => done / Math.max((Date.now() - started) / 1000, 1e-3);
  if (mode === "none") return { update() {}, stop() {} };
  if (mode === "bar") {
    const bar = new SingleBar(
      {
        stream: process.stderr,
        format: `${opts.label} |{bar}| {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted}{note}`,
        etaBuffer: 50,
        hideCursor: true,
      },
      Presets.shades_classic,
    );
    bar.start(opts.total, 0, { rate: "0", note: "" });
    return {
      update: (done, note) =>
        bar.update(Math.min(done, opts.total), {
          rate: rate(done).toFixed(0),
          note: note === undefined ? "" : ` | ${note}`,
        }),
      stop: () => bar.stop(),
    };
  }
  let lastLine = 0;
  const line = (done: number, note: string | undefined) => {
    const r = rate(done);
    const eta = r > 0 ? Math.max(0, (opts.total - done) / r) : Number.NaN;
    process.stderr.write(
      `${opts.label}: ${done}/${opts.total} ${unit} (${((100 * done) / Math.max(opts.total, 1)).toFixed(1)}%), ${r.toFixed(0)} ${unit}/s, ETA ${Number.isFinite(eta) ? `${eta.toFixed(0)} s` : "?"}${note === undefined ? "" : `: ${note}`}\n`,
    );
  };
  return {
    update(done, note) {
      if (Date.now() - lastLine >= (opts.lineEveryMs ?? 5000)) {
        lastLine = Date.now();
        line(done, note);
      }
    },
    stop() {},
  };
}
