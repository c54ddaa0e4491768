"""Throughput of CooccurrenceGen: the NumPy counting core and the whole Beam executor.

  bin/cvrank exec -- python benchmarks/cooccurrence_throughput.py [--corpus auto|onet|synthetic]

The corpus is the bundled dataset's texts (`data/onet/cvs` and `corpus`, tokenised with a lowercase
regex, vocabulary of words seen at least 5 times, by frequency) when present, else a Zipf-distributed
synthetic corpus (~3.2M tokens, vocabulary 25k). Prints figures only.

Reference point: Stanford GloVe's `cooccur` counts 3.2M tokens at window 10 in about 3.5 s on a
2-core machine (~0.9M tokens/s).
"""

import argparse
import collections
import csv
import glob
import os
import re
import sys
import tempfile
import time

import numpy as np

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)

from components.cooccurrence import counting  # noqa: E402  pylint: disable=wrong-import-position
from components.cooccurrence import transforms  # noqa: E402  pylint: disable=wrong-import-position
from components.cooccurrence.io import read_cooccurrence  # noqa: E402  pylint: disable=wrong-import-position

TOKEN_RE = re.compile(r"[a-z0-9]+")
MIN_COUNT = 5


def onet_corpus(data_dir):
  """Documents as token-id arrays (-1 = OOV) and the vocabulary size."""
  csv.field_size_limit(1 << 30)
  texts = []
  for sub in ('cvs', 'corpus'):
    for path in sorted(glob.glob(os.path.join(data_dir, sub, '*.csv'))):
      with open(path, encoding='utf-8', newline='') as f:
        texts.extend(row['text'] for row in csv.DictReader(f))
  docs = [TOKEN_RE.findall(t.lower()) for t in texts]
  freq = collections.Counter(w for d in docs for w in d)
  vocab = [w for w, c in sorted(freq.items(), key=lambda wc: (-wc[1], wc[0])) if c >= MIN_COUNT]
  index = {w: k for k, w in enumerate(vocab)}
  return [np.array([index.get(w, -1) for w in d], np.int64) for d in docs], len(vocab)


def synthetic_corpus(n_tokens=3_200_000, vocab_size=25_000, seed=0):
  rng = np.random.default_rng(seed)
  p = 1.0 / np.arange(1, vocab_size + 1)
  tokens = rng.choice(vocab_size, size=n_tokens, p=p / p.sum()).astype(np.int64)
  lengths = rng.integers(50, 1000, size=n_tokens // 50)
  cuts = np.cumsum(lengths)
  cuts = cuts[cuts < n_tokens]
  return np.split(tokens, cuts), vocab_size


def bench_core(docs, vocab_size, window, symmetric, num_shards, batch_tokens):
  """Counts as the pipeline does, in one process: chunks -> shards -> partials merged per shard."""
  weighting = counting.make_weighting(window, True)
  merge = transforms.MergeCountsFn()
  tokens = np.concatenate(docs)
  lengths = np.array([d.size for d in docs], dtype=np.int64)
  t0 = time.perf_counter()
  per_shard = collections.defaultdict(merge.create_accumulator)
  for doc_lo, doc_hi, tok_lo, tok_hi in counting.chunk_documents(lengths, batch_tokens):
    counts = counting.count_tokens(tokens[tok_lo:tok_hi], lengths[doc_lo:doc_hi], vocab_size,
                                   window, symmetric, weighting)
    for shard, part in counting.split_by_shard(counts, vocab_size, num_shards):
      per_shard[shard] = merge.add_input(per_shard[shard], part)
  t_count = time.perf_counter() - t0
  merged = {s: merge.extract_output(acc) for s, acc in per_shard.items()}
  t_merge = time.perf_counter() - t0
  nonzeros = sum(counting.expand_cells(m, vocab_size, symmetric, weighting.scale)[0].size
                 for m in merged.values())
  return t_count, t_merge, time.perf_counter() - t0, nonzeros


def write_examples(docs, uri, num_files):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=import-outside-toplevel

  examples = standard_artifacts.Examples()
  examples.uri = uri
  examples.split_names = artifact_utils.encode_split_names(['train'])
  split_dir = artifact_utils.get_split_uri([examples], 'train')
  os.makedirs(split_dir)
  for k in range(num_files):
    path = os.path.join(split_dir, f'data-{k:05d}-of-{num_files:05d}.gz')
    with tf.io.TFRecordWriter(path, options='GZIP') as writer:
      for doc in docs[k::num_files]:
        ex = tf.train.Example()
        ex.features.feature['token_ids'].int64_list.value.extend(doc.tolist())
        writer.write(ex.SerializeToString())
  return examples


def bench_executor(docs, vocab_size, window, workers, num_shards):
  from tfx.types import standard_artifacts  # pylint: disable=import-outside-toplevel
  from components.cooccurrence import executor  # pylint: disable=import-outside-toplevel
  from components.cooccurrence.artifacts import CooccurrenceMatrix  # pylint: disable=import-outside-toplevel

  root = tempfile.mkdtemp(prefix='cooccurrence_bench_')
  examples = write_examples(docs, os.path.join(root, 'examples'), num_files=2 * workers)
  transform_graph = standard_artifacts.TransformGraph()
  transform_graph.uri = os.path.join(root, 'transform_graph')
  # The benchmark has no Transform run: the vocabulary size is known here.
  executor.vocabulary_size = lambda uri, name=None: vocab_size
  output = CooccurrenceMatrix()
  output.uri = os.path.join(root, 'cooccurrence')
  args = [f'--direct_num_workers={workers}']
  if workers > 1:
    args.append('--direct_running_mode=multi_processing')
  context = executor.Executor.Context(beam_pipeline_args=args, tmp_dir=os.path.join(root, 'tmp'))
  t0 = time.perf_counter()
  executor.Executor(context).Do(
      {'examples': [examples], 'transform_graph': [transform_graph]},
      {'cooccurrence': [output]},
      {'window_size': window, 'symmetric': 1, 'distance_weighting': 1, 'splits': None,
       'token_feature': 'token_ids', 'num_shards': num_shards})
  return time.perf_counter() - t0, output


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--corpus', choices=['auto', 'onet', 'synthetic'], default='auto')
  parser.add_argument('--data', default=os.path.join(PROJECT_ROOT, 'data', 'onet'))
  parser.add_argument('--tokens', type=int, default=3_200_000, help='synthetic corpus size in tokens')
  parser.add_argument('--window', type=int, default=10)
  parser.add_argument('--workers', type=int, default=2, help='DirectRunner workers')
  parser.add_argument('--num-shards', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=3, help='core runs (best is reported)')
  parser.add_argument('--batch-tokens', type=int, default=transforms.DEFAULT_BATCH_TOKENS)
  parser.add_argument('--skip-executor', action='store_true')
  args = parser.parse_args()

  use_onet = args.corpus == 'onet' or (args.corpus == 'auto' and os.path.isdir(args.data))
  t0 = time.perf_counter()
  docs, vocab_size = onet_corpus(args.data) if use_onet else synthetic_corpus(args.tokens)
  n_tokens = sum(d.size for d in docs)
  n_in_vocab = sum(int(np.count_nonzero(d >= 0)) for d in docs)
  print(f'corpus: {"onet " + args.data if use_onet else "synthetic Zipf"}: {len(docs)} documents, '
        f'{n_tokens} tokens ({n_in_vocab} in vocabulary), vocab_size {vocab_size} '
        f'(prepared in {time.perf_counter() - t0:.1f} s)')
  print(f'window {args.window}, symmetric, distance weighting, {args.num_shards} shards')

  runs = [bench_core(docs, vocab_size, args.window, True, args.num_shards, args.batch_tokens)
          for _ in range(args.repeats)]
  t_count, t_merge, t_total, nonzeros = min(runs, key=lambda r: r[2])
  print(f'counting core (1 process, {args.batch_tokens} tokens per batch, best of {args.repeats}): {t_total:.2f} s = '
        f'{n_tokens / t_total / 1e6:.2f}M tokens/s (count+shard {t_count:.2f} s, '
        f'merge {t_merge - t_count:.2f} s, expand {t_total - t_merge:.2f} s); '
        f'{nonzeros} non-zero cells')

  if not args.skip_executor:
    mode = 'multi_processing' if args.workers > 1 else 'in_memory'
    # A run on a few documents measures the runner's fixed cost (start-up, worker processes,
    # shuffle set-up, tear-down), which dominates on small corpora.
    small = docs[:50]
    small_seconds, _ = bench_executor(small, vocab_size, args.window, args.workers,
                                      args.num_shards)
    seconds, output = bench_executor(docs, vocab_size, args.window, args.workers,
                                     args.num_shards)
    n_small = sum(d.size for d in small)
    print(f'Beam executor (DirectRunner {mode}, {args.workers} workers, reading, counting, '
          f'merging, writing): {seconds:.2f} s = {n_tokens / seconds / 1e6:.2f}M tokens/s; '
          f'nonzeros {output.nonzeros}, total_weight {output.total_weight:.6g}')
    print(f'  fixed cost (same executor on {len(small)} documents): {small_seconds:.2f} s; '
          f'marginal throughput {(n_tokens - n_small) / max(seconds - small_seconds, 1e-9) / 1e6:.2f}M '
          f'tokens/s')
    t0 = time.perf_counter()
    i, _, _ = read_cooccurrence(output.uri)
    seconds = time.perf_counter() - t0
    print(f'read_cooccurrence: {i.size} cells in {seconds:.2f} s = {i.size / seconds / 1e6:.2f}M '
          'cells/s')

if __name__ == '__main__':
  main()
