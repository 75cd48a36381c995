"""s-CLIPLoss in numpy + its BLAS, float32: the comparison `clipsieve bench` prints beside onnxruntime.

The same math as clipsieve's engine (docs/scoring.md): for each batch of one random draw, gather the
batch's rows, Z = (img_B / tau) @ txt_B^T, then a max-shifted logsumexp over rows and over columns of
that one Z, R = tau/2 * (lse_row + lse_col). Prints one JSON object on stdout.

    python3 scripts/bench_numpy.py --n 16384 --b 4096 --d 768 --repeats 3
"""

import argparse
import json
import time

import numpy as np


def unit_rows(rng, n, d):
    m = rng.standard_normal((n, d), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def s_clip_loss_normaliser(img, txt, order, b, tau):
    n = img.shape[0]
    r = np.empty(n, dtype=np.float64)
    inv_tau = np.float32(1.0 / tau)
    for start in range(0, n, b):
        idx = order[start : start + b]
        z = (img[idx] * inv_tau) @ txt[idx].T
        row_max = z.max(axis=1, keepdims=True)
        lse_row = np.log(np.exp(z - row_max).sum(axis=1)) + row_max[:, 0]
        col_max = z.max(axis=0, keepdims=True)
        lse_col = np.log(np.exp(z - col_max).sum(axis=0)) + col_max[0]
        r[idx] = tau / 2 * (lse_row.astype(np.float64) + lse_col.astype(np.float64))
    return r


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--b", type=int, default=4096)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--tau", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    img = unit_rows(rng, args.n, args.d)
    txt = unit_rows(rng, args.n, args.d)
    order = rng.permutation(args.n)
    s_clip_loss_normaliser(img[: args.b], txt[: args.b], np.arange(args.b), args.b, args.tau)  # warm-up

    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        s_clip_loss_normaliser(img, txt, order, args.b, args.tau)
        best = min(best, time.perf_counter() - t0)

    blas = "unknown"
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict mode
        pass
    flops = 2.0 * args.n * args.b * args.d
    print(
        json.dumps(
            {
                "numpy": np.__version__,
                "blas": blas,
                "n": args.n,
                "b": args.b,
                "d": args.d,
                "seconds": best,
                "records_per_second": args.n / best,
                "gflops": flops / best / 1e9,
            }
        )
    )


if __name__ == "__main__":
    main()
