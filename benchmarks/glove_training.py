"""Benchmark of the GloVe training core (trainer/glove.py): seconds per epoch and non-zeros per second.

Trains on a co-occurrence matrix artifact (`--matrix URI`, the directory holding `matrix/part-*`) or on
a synthetic matrix of realistic shape: Zipf-distributed word frequencies over `--vocab` words, half of
each word's partners drawn from its own "topic" so that the matrix has structure to learn, pairs at
distances 1..10 weighted 1/d and counted both ways as GloVe's cooccur.c does, until about
`--nonzeros` distinct cells exist, then a random subset of exactly that many. Prints figures only
(wall seconds and process CPU seconds per epoch, non-zeros per second, the loss); asserts nothing.
The first epoch includes tracing the TensorFlow functions, so the summary leaves it out.

    bin/cvrank exec -- python benchmarks/glove_training.py                 # 6.7M cells, 25k words, dim 100
    bin/cvrank exec -- python benchmarks/glove_training.py --matrix DIR --epochs 5
    bin/cvrank exec -- python benchmarks/glove_training.py --cache /some/dir/m.npz   # generate once, reuse

(`--cache` and `--matrix` paths outside the project need `CVRANK_BIND=dir` to be visible inside.)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from components.glove_trainer.cooccurrence_reader import read_cooccurrence_shards  # noqa: E402
from trainer.glove import GloveConfig, glove_c_cost, train_glove  # noqa: E402


def synthetic_matrix(vocab: int, nonzeros: int, seed: int = 0, topics: int = 50):
    """Returns (i, j, x) with about `nonzeros` distinct cells of a symmetric Zipf-like matrix."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    cdf = np.cumsum(p / p.sum())
    per_topic = -(-vocab // topics)
    tp = 1.0 / np.arange(1, per_topic + 1)
    tcdf = np.cumsum(tp / tp.sum())
    keys, weights = [], []
    found = 0
    draws = nonzeros  # pairs per round; rounds continue until enough distinct cells exist
    while found < nonzeros:
        a = np.minimum(np.searchsorted(cdf, rng.random(draws)), vocab - 1)
        same = rng.random(draws) < 0.5
        b_global = np.minimum(np.searchsorted(cdf, rng.random(draws)), vocab - 1)
        b_topic = a % topics + topics * np.searchsorted(tcdf, rng.random(draws))
        b = np.where(same & (b_topic < vocab), b_topic, b_global)
        w = 1.0 / rng.integers(1, 11, draws)
        keys += [a * vocab + b, b * vocab + a]
        weights += [w, w]
        k = np.concatenate(keys)
        uniq, inv = np.unique(k, return_inverse=True)
        found = uniq.size
        if found < nonzeros:
            keys, weights = [uniq], [np.bincount(inv, weights=np.concatenate(weights))]
    x = np.bincount(inv, weights=np.concatenate(weights))
    keep = np.sort(rng.permutation(uniq.size)[:nonzeros])  # trim to the requested size
    uniq, x = uniq[keep], x[keep]
    return (uniq // vocab).astype(np.int32), (uniq % vocab).astype(np.int32), x.astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--matrix", help="co-occurrence matrix artifact directory (default: synthetic)")
    ap.add_argument("--vocab", type=int, default=25_000, help="synthetic vocabulary size")
    ap.add_argument("--nonzeros", type=int, default=6_700_000, help="synthetic non-zero cells")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=GloveConfig.batch_size)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", help="an .npz file: the synthetic matrix is loaded from it when it exists, "
                                    "else generated and saved there")
    ap.add_argument("--intra-op-threads", type=int, default=0, help="TensorFlow's intra-op threads (0: default)")
    ap.add_argument("--inter-op-threads", type=int, default=0, help="TensorFlow's inter-op threads (0: default)")
    args = ap.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

    t0 = time.perf_counter()
    if args.matrix:
        i, j, x = read_cooccurrence_shards(args.matrix)
        vocab = int(max(i.max(), j.max())) + 1
        source = args.matrix
    elif args.cache and os.path.exists(args.cache):
        with np.load(args.cache) as m:
            i, j, x, vocab = m["i"], m["j"], m["x"], int(m["vocab"])
        source = f"synthetic, cached in {args.cache}"
    else:
        i, j, x = synthetic_matrix(args.vocab, args.nonzeros, args.seed)
        vocab = args.vocab
        source = "synthetic"
        if args.cache:
            np.savez(args.cache, i=i, j=j, x=x, vocab=vocab)
    load_s = time.perf_counter() - t0
    print(f"matrix: {source}, vocab {vocab}, {i.size} non-zeros, x in [{x.min():.3g}, {x.max():.3g}], "
          f"prepared in {load_s:.1f} s")
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")

    config = GloveConfig(dim=args.dim, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    print(f"config: {config}")

    # Process CPU time per epoch too: on a machine shared with other work, wall time varies with the
    # load; CPU seconds (both cores together) vary much less.
    cpu = [time.process_time()]

    def report(epoch, loss, seconds):
        cpu.append(time.process_time())
        print(f"epoch {epoch}: {seconds:.2f} s, {i.size / seconds / 1e6:.2f}M non-zeros/s, "
              f"{cpu[-1] - cpu[-2]:.2f} CPU-s, J={loss:.6g}, glove.c cost {glove_c_cost(loss, i.size):.6f}",
              flush=True)

    t0 = time.perf_counter()
    result = train_glove(i, j, x, vocab, config, on_epoch_end=report)
    total = time.perf_counter() - t0
    secs = result.epoch_seconds
    first = 1 if len(secs) > 1 else 0  # the first epoch includes tracing
    best = min(secs[first:])
    cpu_s = float(np.mean(np.diff(cpu)[first:]))
    print(f"total {total:.1f} s for {len(secs)} epochs; epochs {first + 1}..{len(secs)}: "
          f"mean {np.mean(secs[first:]):.2f} s/epoch, best {best:.2f} s/epoch = {i.size / best / 1e6:.2f}M "
          f"non-zeros/s, {cpu_s:.2f} CPU-s/epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
