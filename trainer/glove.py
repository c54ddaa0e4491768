"""GloVe training core: the objective and AdaGrad of the GloVe paper and its reference tool glove.c.

Objective, over the non-zero cells (i, j, x_ij) of the word-word co-occurrence matrix:

    f(x) = min(1, (x / x_max) ** alpha)
    J    = sum_ij f(x_ij) * (w_i . w~_j + b_i + b~_j - log x_ij) ** 2

`losses` and the `on_epoch_end` callback report J itself (summed over the epoch's cells, each cell
evaluated with the parameters current when its mini-batch was processed, as glove.c accumulates its
cost). glove.c prints `0.5 * J / nonzeros` ("cost"); `glove_c_cost` converts.

Gradient convention: glove.c differentiates J / 2. For a cell with diff = w_i . w~_j + b_i + b~_j -
log x_ij and fdiff = eta * f(x_ij) * diff, its per-parameter "learning rate times gradient" is
fdiff * w~_j for w_i, fdiff * w_i for w~_j and fdiff for b_i and b~_j. This module uses exactly that
convention: g = eta * d(J/2)/d(theta).

AdaGrad as glove.c does it: every parameter (W, W~, b, b~) has an accumulator starting at 1.0; a
step applies theta -= g / sqrt(acc) with the accumulator *before* the step, then acc += g ** 2. Note
that g already contains eta, so the accumulator sums squared eta-scaled gradients, as in glove.c.

Mini-batches: glove.c runs Hogwild SGD, one update per cell, threads racing on shared rows. Here the
cells are shuffled (seeded; reshuffled every epoch unless `shuffle=False`) and cut into mini-batches;
within a batch every cell's g is computed from the parameters at the start of the batch, the g of
cells touching the same row are summed (a segment sum over the batch's unique rows), and each
touched row gets one AdaGrad step with that sum. This is the deterministic mini-batch analogue of
glove.c's lock-free per-cell updates, where concurrent threads likewise compute with rows that
others are about to change. With batch_size=1 it is exactly glove.c's single-thread sequence of
updates. The difference for a row touched k times in one batch: glove.c's accumulator grows by
sum_k g_k^2 over k successive steps, here by (sum_k g_k)^2 in one step.

Initialisation as glove.c: W, W~, b, b~ uniform in [-0.5, 0.5) / (dim + 1) (glove.c divides by its
vector_size after incrementing it for the bias column), accumulators 1.0. Cells whose diff is not
finite are skipped, as later glove.c versions skip them. Arithmetic is float32 (glove.c: double);
log x and f(x) are computed in float64 and rounded once.

Determinism: initial values come from a NumPy generator seeded with `seed`, the shuffle of epoch e
from one seeded with (seed, e). Every TensorFlow op used has a deterministic CPU kernel (stable
sort, segment sums in cell order, scatters on unique rows), so the same seed and data give
bit-identical vectors on the same machine and TensorFlow build, whatever the thread settings. On a
GPU some of these kernels use atomics; `GloveConfig.deterministic` then turns on TensorFlow op
determinism.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from config import default

_log = logging.getLogger(__name__)
# EpochLogger's default output: `cvrank run` shows this logger's records as the node's progress.
PROGRESS_LOG = logging.getLogger("cvrank.progress.glove")

VECTORS_W_PLUS_W_TILDE = "W+W_tilde"
VECTORS_W = "W"
_VECTOR_MODES = (VECTORS_W_PLUS_W_TILDE, VECTORS_W)

EpochCallback = Callable[[int, float, float], None]


@dataclasses.dataclass(frozen=True)
class GloveConfig:
    """Hyperparameters. The defaults of the fields shared with the pipeline are `config.PipelineConfig`'s.

    dim: vector size (without the bias). epochs: full passes over the cells.
    x_max, alpha: the weighting function f. learning_rate: glove.c's eta (initial AdaGrad step).
    batch_size: cells per mini-batch (see the module doc; 1 reproduces glove.c's sequence). With
      16384 the loss per epoch tracks glove.c's closely on a 6.7M-cell matrix; far smaller
      batches make each epoch slower (fixed cost per batch).
    seed: seeds the initial values and the per-epoch shuffles.
    vectors: "W+W_tilde" (glove.c -model 2, its default) or "W" (-model 1) for `GloveResult.vectors`.
    shuffle: reshuffle the cells each epoch; False keeps the given order (glove.c reads the file
      `shuffle` wrote, in the same order every epoch).
    deterministic: when a GPU is visible, enable TensorFlow op determinism (process-wide).
    """

    dim: int = default("embedding_dim")
    epochs: int = default("epochs")
    x_max: float = default("x_max")
    alpha: float = default("alpha")
    learning_rate: float = default("learning_rate")
    batch_size: int = default("batch_size")
    seed: int = default("seed")
    vectors: str = VECTORS_W_PLUS_W_TILDE
    shuffle: bool = True
    deterministic: bool = True

    def __post_init__(self):
        if self.dim < 1 or self.epochs < 0 or self.batch_size < 1 or self.seed < 0:
            raise ValueError("dim and batch_size must be >= 1, epochs and seed >= 0")
        if not (self.x_max > 0 and self.alpha >= 0 and self.learning_rate > 0):
            raise ValueError("x_max and learning_rate must be > 0 and alpha >= 0")
        if self.vectors not in _VECTOR_MODES:
            raise ValueError(f"vectors must be one of {_VECTOR_MODES}, got {self.vectors!r}")


@dataclasses.dataclass
class GloveParams:
    """Model parameters (float32): W, W_tilde [vocab, dim]; b, b_tilde [vocab]."""

    W: np.ndarray
    W_tilde: np.ndarray
    b: np.ndarray
    b_tilde: np.ndarray


@dataclasses.dataclass
class GloveResult:
    """What `train_glove` returns.

    vectors: [vocab, dim] float32, W + W_tilde or W per `GloveConfig.vectors`.
    W, W_tilde, b, b_tilde: the trained parameters. gradsq: their AdaGrad accumulators (GloveParams).
    losses: J of each epoch (see the module doc). epoch_seconds: wall time of each epoch.
    """

    vectors: np.ndarray
    W: np.ndarray
    W_tilde: np.ndarray
    b: np.ndarray
    b_tilde: np.ndarray
    gradsq: GloveParams
    losses: list[float]
    epoch_seconds: list[float]


def weighting(x: np.ndarray, x_max: float, alpha: float) -> np.ndarray:
    """f(x) = min(1, (x / x_max) ** alpha), float32 (glove.c: x > x_max ? 1 : (x/x_max)^alpha)."""
    x = np.asarray(x, np.float64)
    return np.minimum(1.0, (x / x_max) ** alpha).astype(np.float32)


def cell_terms(x: np.ndarray, x_max: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(log x, f(x)) per cell, float32: the per-cell constants of the objective."""
    x = np.asarray(x, np.float64)
    return np.log(x).astype(np.float32), weighting(x, x_max, alpha)


def pack_cells(i, j, log_x, fx) -> np.ndarray:
    """The cells as one [n, 4] int32 array: i, j and the bits of log x and f(x).

    Why: one row per cell makes the per-epoch shuffle a single row gather and a batch one slice.
    """
    log_x = np.asarray(log_x, np.float32)
    fx = np.asarray(fx, np.float32)
    columns = [np.asarray(i, np.int32), np.asarray(j, np.int32), log_x.view(np.int32), fx.view(np.int32)]
    return np.stack(columns, axis=1)


def glove_c_cost(loss: float, nonzeros: int) -> float:
    """The figure glove.c prints as "cost" for an epoch whose J is `loss`: 0.5 * J / nonzeros."""
    return 0.5 * loss / max(nonzeros, 1)


def initial_params(vocab_size: int, dim: int, seed: int) -> GloveParams:
    """glove.c's initial values: uniform in [-0.5, 0.5) / (dim + 1), from a generator seeded by `seed`."""
    rng = np.random.default_rng(seed)
    # Drawn as one array shaped like glove.c's: word rows then context rows, the bias last.
    table = ((rng.random((2 * vocab_size, dim + 1)) - 0.5) / (dim + 1)).astype(np.float32)
    return GloveParams(
        W=table[:vocab_size, :dim].copy(),
        W_tilde=table[vocab_size:, :dim].copy(),
        b=table[:vocab_size, dim].copy(),
        b_tilde=table[vocab_size:, dim].copy(),
    )


def glove_loss(W, W_tilde, b, b_tilde, i, j, x, x_max: float = 100.0, alpha: float = 0.75) -> tf.Tensor:
    """J over the given cells, as a differentiable TensorFlow expression (for checks and evaluation)."""
    x = tf.convert_to_tensor(x, tf.float32)
    diff = (
        tf.reduce_sum(tf.gather(W, i) * tf.gather(W_tilde, j), axis=1)
        + tf.gather(b, i) + tf.gather(b_tilde, j) - tf.math.log(x)
    )
    fx = tf.minimum(1.0, tf.pow(x / x_max, alpha))
    return tf.reduce_sum(fx * tf.square(diff))


class GloveModel:
    """The parameters and AdaGrad state as TensorFlow variables, with a compiled mini-batch loop.

    Layout (why: a batch then needs no masking, slicing or concatenation of rows): a word table
    [vocab, dim + 2] with rows (w_i, b_i, 1) and a context table with rows
    (w~_j, 1, b~_j), so that word_i . context_j = w_i . w~_j + b_i + b~_j and the gradient of either
    row is fdiff times the other row. The constant-1 slots get an AdaGrad accumulator of +inf, which
    makes their step g / sqrt(inf) exactly 0, so they stay 1. Word and context rows live in separate
    variables so that their updates are independent and TensorFlow can run them concurrently.
    """

    def __init__(self, vocab_size: int, config: GloveConfig, initial: Optional[GloveParams] = None):
        """Starts from `initial` when given (shapes must match), else from `initial_params`."""
        if vocab_size < 1:
            raise ValueError("vocab_size must be >= 1")
        self.vocab_size = vocab_size
        self.config = config
        d = config.dim
        p = initial if initial is not None else initial_params(vocab_size, d, config.seed)
        for name, arr, shape in (("W", p.W, (vocab_size, d)), ("W_tilde", p.W_tilde, (vocab_size, d)),
                                 ("b", p.b, (vocab_size,)), ("b_tilde", p.b_tilde, (vocab_size,))):
            if np.shape(arr) != shape:
                raise ValueError(f"initial {name} has shape {np.shape(arr)}, expected {shape}")
        ones = np.ones((vocab_size, 1), np.float32)
        word = np.concatenate([p.W, np.reshape(p.b, (-1, 1)), ones], axis=1).astype(np.float32)
        context = np.concatenate([p.W_tilde, ones, np.reshape(p.b_tilde, (-1, 1))], axis=1).astype(np.float32)
        word_acc, context_acc = np.ones_like(word), np.ones_like(context)
        word_acc[:, d + 1] = np.inf
        context_acc[:, d] = np.inf
        self.word = tf.Variable(word, name="glove_word")
        self.context = tf.Variable(context, name="glove_context")
        self.word_gradsq = tf.Variable(word_acc, name="glove_word_gradsq")
        self.context_gradsq = tf.Variable(context_acc, name="glove_context_gradsq")
        cells = [tf.TensorSpec([None], tf.int32)] * 2 + [tf.TensorSpec([None], tf.float32)] * 2
        self.train_step = tf.function(self._step, input_signature=cells)
        self._epoch = tf.function(
            self._epoch_fn, input_signature=[tf.TensorSpec([None, 4], tf.int32), tf.TensorSpec([], tf.int32)])

    def _step(self, i, j, log_x, fx):
        """One mini-batch of cells; returns its J (float32). `log_x` = log x, `fx` = f(x) per cell."""
        wi = tf.gather(self.word, i)  # (w_i, b_i, 1)
        wj = tf.gather(self.context, j)  # (w~_j, 1, b~_j)
        diff = tf.reduce_sum(wi * wj, axis=1) - log_x  # w.w~ + b + b~ - log x
        diff = tf.where(tf.math.is_finite(diff), diff, 0.0)  # glove.c skips such cells
        fdiff = fx * diff
        loss = tf.reduce_sum(fdiff * diff)
        # eta * d(J/2)/d(row) of a cell is eta * fdiff * (the cell's other row).
        eta_fdiff = (self.config.learning_rate * fdiff)[:, None]
        _adagrad_rows(self.word, self.word_gradsq, i, eta_fdiff * wj)
        _adagrad_rows(self.context, self.context_gradsq, j, eta_fdiff * wi)
        return loss

    def _epoch_fn(self, cells, batch_size):
        """Runs packed cells (see `pack_cells`) in their order, in batches; returns the summed J (float64)."""
        n = tf.shape(cells)[0]
        total = tf.constant(0.0, tf.float64)
        for start in tf.range(0, n, batch_size):
            batch = cells[start:tf.minimum(start + batch_size, n)]
            loss = self._step(batch[:, 0], batch[:, 1], tf.bitcast(batch[:, 2], tf.float32),
                              tf.bitcast(batch[:, 3], tf.float32))
            total += tf.cast(loss, tf.float64)
        return total

    def run_epoch(self, i, j, log_x, fx) -> float:
        """One pass over the cells in the given order; returns its J."""
        return self.run_packed_epoch(pack_cells(i, j, log_x, fx))

    def run_packed_epoch(self, cells) -> float:
        """One pass over cells packed by `pack_cells`, in their order; returns its J."""
        return float(self._epoch(cells, tf.constant(self.config.batch_size, tf.int32)))

    def params(self) -> GloveParams:
        """Current W, W_tilde, b, b_tilde as NumPy arrays."""
        return self._split(self.word.numpy(), self.context.numpy())

    def accumulators(self) -> GloveParams:
        """Current AdaGrad accumulators of W, W_tilde, b, b_tilde."""
        return self._split(self.word_gradsq.numpy(), self.context_gradsq.numpy())

    def _split(self, word: np.ndarray, context: np.ndarray) -> GloveParams:
        d = self.config.dim
        return GloveParams(W=word[:, :d].copy(), W_tilde=context[:, :d].copy(), b=word[:, d].copy(),
                           b_tilde=context[:, d + 1].copy())

    def loss(self, i, j, x) -> float:
        """J over the given cells with the current parameters (no update)."""
        p = self.params()
        cfg = self.config
        return float(glove_loss(p.W, p.W_tilde, p.b, p.b_tilde, i, j, x, cfg.x_max, cfg.alpha))


def _adagrad_rows(table: tf.Variable, gradsq: tf.Variable, rows, grads) -> None:
    """glove.c's AdaGrad step on `table` for per-cell gradients `grads` of rows `rows` (repeats allowed).

    The gradients of a repeated row are summed first (in cell order); then each touched row r gets
    table[r] -= g / sqrt(gradsq[r]) and, after that, gradsq[r] += g^2.
    """
    # A stable sort groups the repeats, so each row's gradients are summed in cell order
    # (deterministic); on CPU this is cheaper than tf.unique plus an unsorted segment sum.
    order = tf.argsort(rows, stable=True)
    sorted_rows = tf.gather(rows, order)
    first = tf.concat([[True], tf.not_equal(sorted_rows[1:], sorted_rows[:-1])], axis=0)
    uniq = tf.boolean_mask(sorted_rows, first)
    g = tf.math.segment_sum(tf.gather(grads, order), tf.cumsum(tf.cast(first, tf.int32)) - 1)
    acc = tf.gather(gradsq, uniq)
    # Rows are unique, so gather-compute-scatter_update is exact; on CPU it is several times faster
    # than scatter_sub / scatter_add, whose kernels handle repeated rows.
    table.scatter_update(tf.IndexedSlices(tf.gather(table, uniq) - g / tf.sqrt(acc), uniq))
    gradsq.scatter_update(tf.IndexedSlices(acc + g * g, uniq))


def _check_cells(i, j, x, vocab_size):
    i = np.asarray(i, np.int32)
    j = np.asarray(j, np.int32)
    x = np.asarray(x, np.float32)
    if not (i.ndim == j.ndim == x.ndim == 1 and i.shape == j.shape == x.shape):
        raise ValueError("i, j and x must be 1-D arrays of equal length")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size})")
    return i, j, x


def train_glove(
    i,
    j,
    x,
    vocab_size: int,
    config: GloveConfig = GloveConfig(),
    on_epoch_end: Optional[EpochCallback] = None,
    initial: Optional[GloveParams] = None,
) -> GloveResult:
    """Trains GloVe on the non-zero cells (i[k], j[k], x[k]) of a vocab_size x vocab_size matrix.

    `on_epoch_end(epoch, loss, seconds)` is called after each epoch with the 1-based epoch number,
    that epoch's J and its wall time in seconds. `initial` overrides glove.c's random start.
    Same inputs and config (seed included) give identical results on the same machine setup.
    Raises ValueError when the arrays differ in length or an id is outside [0, vocab_size). Cells
    with x <= 0 (log x not finite) are skipped, as glove.c skips them.
    Memory: besides the parameters, about 16 bytes per cell for each of up to three copies of the
    cells (packed, this epoch's shuffle, the next epoch's).
    """
    i, j, x = _check_cells(i, j, x, vocab_size)
    if config.deterministic and tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    model = GloveModel(vocab_size, config, initial)
    # log x and f(x) never change: computed once, not every epoch.
    cells = pack_cells(i, j, *cell_terms(x, config.x_max, config.alpha))

    def epoch_cells(epoch: int) -> np.ndarray:
        if not config.shuffle:
            return cells
        return np.take(cells, np.random.default_rng([config.seed, epoch]).permutation(len(cells)), axis=0)

    losses, seconds = [], []
    # The next epoch's shuffle is prepared in a thread while this epoch trains (NumPy releases the
    # GIL for it); it is a function of (seed, epoch) only, so this does not affect determinism.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(epoch_cells, 0) if config.epochs else None
        for epoch in range(config.epochs):
            t0 = time.perf_counter()
            ordered = upcoming.result()
            if epoch + 1 < config.epochs:
                upcoming = pool.submit(epoch_cells, epoch + 1)
            loss = model.run_packed_epoch(ordered)
            del ordered
            dt = time.perf_counter() - t0
            losses.append(loss)
            seconds.append(dt)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, loss, dt)
    p = model.params()
    vectors = p.W + p.W_tilde if config.vectors == VECTORS_W_PLUS_W_TILDE else p.W.copy()
    return GloveResult(vectors=vectors, W=p.W, W_tilde=p.W_tilde, b=p.b, b_tilde=p.b_tilde,
                       gradsq=model.accumulators(), losses=losses, epoch_seconds=seconds)


class EpochLogger:
    """An `on_epoch_end` callback: logs each epoch to the console and, with `log_dir`, to TensorBoard.

    TensorBoard scalars (step = epoch number): `glove/loss` (J), `glove/cost_glove_c` (0.5 * J /
    nonzeros, the figure glove.c prints), `glove/epoch_seconds`, `glove/nonzeros_per_second`.
    """

    def __init__(self, nonzeros: int, epochs: int, log_dir: Optional[str] = None,
                 print_fn: Callable[[str], None] = PROGRESS_LOG.info):
        self.nonzeros = nonzeros
        self.epochs = epochs
        self.print_fn = print_fn
        self._writer = tf.summary.create_file_writer(log_dir) if log_dir else None
        self._total_seconds = 0.0

    def __call__(self, epoch: int, loss: float, seconds: float) -> None:
        self._total_seconds += seconds
        rate = self.nonzeros / seconds if seconds > 0 else math.inf
        eta = self._total_seconds / epoch * (self.epochs - epoch)
        self.print_fn(
            f"GloVe epoch {epoch}/{self.epochs}: J={loss:.6g} "
            f"(glove.c cost {glove_c_cost(loss, self.nonzeros):.6f}), "
            f"{seconds:.1f} s, {rate / 1e6:.2f}M non-zeros/s, ~{eta:.0f} s left"
        )
        if self._writer is not None:
            with self._writer.as_default(step=epoch):
                tf.summary.scalar("glove/loss", loss)
                tf.summary.scalar("glove/cost_glove_c", glove_c_cost(loss, self.nonzeros))
                tf.summary.scalar("glove/epoch_seconds", seconds)
                tf.summary.scalar("glove/nonzeros_per_second", rate)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def save_glove_text(path: str, words: Sequence[str], vectors: np.ndarray, precision: int = 6) -> None:
    """Writes GloVe's text format: one line per word, `word v1 ... vd`, values space-separated.

    `precision` digits after the point (glove.c writes %lf, i.e. 6). Raises ValueError when the
    counts differ or a word is empty or contains whitespace (the format could not be read back).
    Writes through tf.io.gfile, so `path` may be any filesystem TensorFlow knows.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(words) != vectors.shape[0]:
        raise ValueError(f"{len(words)} words for vectors of shape {vectors.shape}")
    for word in words:
        if not word or len(word.split()) != 1 or word.strip() != word:
            raise ValueError(f"word {word!r} is empty or contains whitespace")
    row_fmt = " ".join([f"%.{precision}f"] * vectors.shape[1])
    with tf.io.gfile.GFile(path, "w") as f:
        for word, row in zip(words, vectors.tolist()):
            f.write(f"{word} {row_fmt % tuple(row)}\n")


def load_glove_text(path: str) -> tuple[list[str], np.ndarray]:
    """Reads GloVe's text format; returns (words, vectors [n, dim] float32).

    Raises ValueError when lines have different numbers of values.
    """
    words, rows = [], []
    with tf.io.gfile.GFile(path, "r") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(" ")
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'word v1 ... vd'")
            if rows and len(parts) - 1 != len(rows[0]):
                raise ValueError(f"{path}:{line_no}: {len(parts) - 1} values, expected {len(rows[0])}")
            words.append(parts[0])
            rows.append(parts[1:])
    vectors = np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), np.float32)
    return words, vectors
