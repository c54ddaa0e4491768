"""Tests of the GloVe training core (trainer/glove.py) and the co-occurrence shard reader."""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from components.glove_trainer.cooccurrence_reader import read_cooccurrence_shards
from trainer.glove import (
    EpochLogger,
    GloveConfig,
    GloveModel,
    GloveParams,
    cell_terms,
    glove_c_cost,
    glove_loss,
    initial_params,
    load_glove_text,
    save_glove_text,
    train_glove,
)

# --- NumPy reference of the formulas (float64) -------------------------------------------------


def ref_weight(x, x_max, alpha):
    return np.where(x > x_max, 1.0, (x / x_max) ** alpha)  # glove.c's form of min(1, (x/x_max)^a)


def ref_batch(p, i, j, x, x_max, alpha, eta):
    """J of the batch and the summed eta * d(J/2)/d(param) of W, W~, b, b~."""
    W, Wt, b, bt = (np.asarray(a, np.float64) for a in (p.W, p.W_tilde, p.b, p.b_tilde))
    diff = np.sum(W[i] * Wt[j], axis=1) + b[i] + bt[j] - np.log(x)
    f = ref_weight(x, x_max, alpha)
    J = np.sum(f * diff**2)
    fd = eta * f * diff
    gW, gWt, gb, gbt = np.zeros_like(W), np.zeros_like(Wt), np.zeros_like(b), np.zeros_like(bt)
    np.add.at(gW, i, fd[:, None] * Wt[j])
    np.add.at(gWt, j, fd[:, None] * W[i])
    np.add.at(gb, i, fd)
    np.add.at(gbt, j, fd)
    return J, GloveParams(gW, gWt, gb, gbt)


def ref_adagrad(p, acc, g):
    """glove.c's AdaGrad on every parameter: step with the old accumulator, then accumulate g^2."""
    new_p = GloveParams(*(np.asarray(v, np.float64) - gv / np.sqrt(a)
                          for v, gv, a in zip(_fields(p), _fields(g), _fields(acc))))
    new_acc = GloveParams(*(np.asarray(a, np.float64) + gv**2 for gv, a in zip(_fields(g), _fields(acc))))
    return new_p, new_acc


def ref_glove_c_sequential(p, i, j, x, x_max, alpha, eta):
    """glove.c's single-thread loop: one AdaGrad update per cell, in order. Returns (params, J)."""
    W, Wt, b, bt = (np.array(a, np.float64) for a in (p.W, p.W_tilde, p.b, p.b_tilde))
    GW, GWt, Gb, Gbt = np.ones_like(W), np.ones_like(Wt), np.ones_like(b), np.ones_like(bt)
    J = 0.0
    for a, c, v in zip(i, j, x):
        diff = W[a] @ Wt[c] + b[a] + bt[c] - np.log(v)
        fdiff = (diff if v > x_max else (v / x_max) ** alpha * diff)
        J += fdiff * diff
        fdiff *= eta
        t1, t2 = fdiff * Wt[c], fdiff * W[a]
        W[a] -= t1 / np.sqrt(GW[a])
        Wt[c] -= t2 / np.sqrt(GWt[c])
        GW[a] += t1 * t1
        GWt[c] += t2 * t2
        b[a] -= fdiff / np.sqrt(Gb[a])
        bt[c] -= fdiff / np.sqrt(Gbt[c])
        Gb[a] += fdiff**2
        Gbt[c] += fdiff**2
    return GloveParams(W, Wt, b, bt), J


def _fields(p):
    return (p.W, p.W_tilde, p.b, p.b_tilde)


def assert_params_close(actual, expected, rtol=2e-5, atol=1e-6):
    for name, a, e in zip(("W", "W_tilde", "b", "b_tilde"), _fields(actual), _fields(expected)):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=name)


# --- data --------------------------------------------------------------------------------------


def tiny_cells():
    """A batch with rows touched several times, a diagonal cell and x above x_max (=10 below)."""
    i = np.array([0, 0, 1, 2, 3, 0, 4, 2], np.int32)
    j = np.array([1, 2, 0, 2, 0, 4, 0, 3], np.int32)
    x = np.array([3.0, 15.0, 0.5, 50.0, 1.0, 2.5, 7.0, 10.0], np.float32)
    return i, j, x


def structured_matrix(vocab=60, dim=4, seed=0):
    """All cells of a dense matrix whose log is low-rank plus noise: learnable by GloVe."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(vocab, dim)), rng.normal(size=(vocab, dim))
    logx = 0.5 * u @ v.T + 1.5 + 0.1 * rng.normal(size=(vocab, vocab))
    i, j = np.meshgrid(np.arange(vocab), np.arange(vocab), indexing="ij")
    return i.ravel().astype(np.int32), j.ravel().astype(np.int32), np.exp(logx).ravel().astype(np.float32)


# --- (1) one mini-batch against the NumPy reference --------------------------------------------


def test_one_batch_matches_numpy_reference():
    cfg = GloveConfig(dim=3, x_max=10.0, alpha=0.75, learning_rate=0.05, batch_size=100, seed=3)
    i, j, x = tiny_cells()
    vocab = 5
    p0 = initial_params(vocab, cfg.dim, cfg.seed)
    # Larger values than glove.c's start, so that the updates are well above float32 rounding.
    p0 = GloveParams(*(a * 50 for a in _fields(p0)))
    model = GloveModel(vocab, cfg, initial=p0)
    ones = GloveParams(*(np.ones_like(a, np.float64) for a in _fields(p0)))

    log_x, fx = cell_terms(x, cfg.x_max, cfg.alpha)
    loss = float(model.train_step(i, j, log_x, fx))
    J, g = ref_batch(p0, i, j, x, cfg.x_max, cfg.alpha, cfg.learning_rate)
    p1, acc1 = ref_adagrad(p0, ones, g)
    assert loss == pytest.approx(J, rel=1e-5)
    assert_params_close(model.params(), p1)
    assert_params_close(model.accumulators(), acc1)
    # The first step divides by sqrt(1): the update is the eta-scaled gradient itself, which is
    # what distinguishes glove.c's order from accumulate-then-step AdaGrad.
    np.testing.assert_allclose(p0.W - model.params().W, g.W, rtol=2e-5, atol=1e-6)

    # A second batch (a subset, so some accumulators are no longer 1) continues the same way.
    sub = np.array([0, 3, 5, 6])
    loss2 = float(model.train_step(i[sub], j[sub], log_x[sub], fx[sub]))
    J2, g2 = ref_batch(p1, i[sub], j[sub], x[sub], cfg.x_max, cfg.alpha, cfg.learning_rate)
    p2, acc2 = ref_adagrad(p1, acc1, g2)
    assert loss2 == pytest.approx(J2, rel=1e-5)
    assert_params_close(model.params(), p2)
    assert_params_close(model.accumulators(), acc2)


def test_gradient_convention_is_eta_times_gradient_of_half_J():
    cfg = GloveConfig(dim=3, x_max=10.0, learning_rate=0.05)
    i, j, x = tiny_cells()
    p = initial_params(5, cfg.dim, seed=7)
    p = GloveParams(*(a * 50 for a in _fields(p)))
    vars_ = [tf.Variable(a) for a in _fields(p)]
    with tf.GradientTape() as tape:
        J = glove_loss(*vars_, i, j, x, cfg.x_max, cfg.alpha)
        half_J = 0.5 * J
    grads = tape.gradient(half_J, vars_)
    J_ref, g_ref = ref_batch(p, i, j, x, cfg.x_max, cfg.alpha, cfg.learning_rate)
    assert float(J) == pytest.approx(J_ref, rel=1e-5)
    for got, want in zip(grads, _fields(g_ref)):
        np.testing.assert_allclose(cfg.learning_rate * tf.convert_to_tensor(got).numpy(), want,
                                   rtol=2e-5, atol=1e-7)


def test_batch_size_one_is_glove_c_sequential_update():
    cfg = GloveConfig(dim=4, x_max=10.0, batch_size=1, shuffle=False, seed=1)
    i, j, x = tiny_cells()
    p0 = initial_params(5, cfg.dim, cfg.seed)
    p0 = GloveParams(*(a * 50 for a in _fields(p0)))
    model = GloveModel(5, cfg, initial=p0)
    loss = model.run_epoch(i, j, *cell_terms(x, cfg.x_max, cfg.alpha))
    expected, J = ref_glove_c_sequential(p0, i, j, x, cfg.x_max, cfg.alpha, cfg.learning_rate)
    assert loss == pytest.approx(J, rel=1e-5)
    assert_params_close(model.params(), expected)


def test_weighting_cap_and_loss_conventions():
    cfg = GloveConfig(dim=2, x_max=10.0, alpha=0.75)
    _, fx = cell_terms(np.array([5.0, 10.0, 20.0]), cfg.x_max, cfg.alpha)
    np.testing.assert_allclose(fx, [0.5**0.75, 1.0, 1.0], rtol=1e-6)
    assert glove_c_cost(10.0, 4) == pytest.approx(1.25)


def test_initial_values_follow_glove_c():
    p = initial_params(200, 50, seed=0)
    for a in _fields(p):
        assert a.dtype == np.float32
        assert np.all(np.abs(a) <= 0.5 / 51)
    assert np.abs(p.W).max() > 0.4 / 51  # the whole range is used


# --- (2) training lowers the loss ---------------------------------------------------------------


def test_a_few_epochs_lower_the_loss():
    i, j, x = structured_matrix()
    cfg = GloveConfig(dim=8, epochs=6, batch_size=256, seed=0, x_max=20.0)
    start = GloveModel(60, cfg).loss(i, j, x)
    seen = []
    result = train_glove(i, j, x, 60, cfg, on_epoch_end=lambda e, loss, s: seen.append((e, loss, s)))
    assert [e for e, _, _ in seen] == list(range(1, 7))
    assert [loss for _, loss, _ in seen] == result.losses
    assert all(s > 0 for _, _, s in seen)
    assert all(b < a for a, b in zip(result.losses, result.losses[1:]))
    final = float(glove_loss(result.W, result.W_tilde, result.b, result.b_tilde, i, j, x, cfg.x_max,
                             cfg.alpha))
    assert final < 0.2 * start
    np.testing.assert_array_equal(result.vectors, result.W + result.W_tilde)
    assert result.vectors.shape == (60, 8) and result.vectors.dtype == np.float32


def test_vectors_w_only():
    i, j, x = structured_matrix(vocab=20)
    result = train_glove(i, j, x, 20, GloveConfig(dim=4, epochs=1, batch_size=64, vectors="W"))
    np.testing.assert_array_equal(result.vectors, result.W)


# --- (3) determinism ----------------------------------------------------------------------------


def test_same_seed_same_vectors_different_seed_different():
    i, j, x = structured_matrix(vocab=80, seed=1)
    cfg = GloveConfig(dim=16, epochs=3, batch_size=300, seed=11)  # many rows repeat within a batch
    a = train_glove(i, j, x, 80, cfg)
    b = train_glove(i, j, x, 80, cfg)
    c = train_glove(i, j, x, 80, GloveConfig(dim=16, epochs=3, batch_size=300, seed=12))
    for name in ("W", "W_tilde", "b", "b_tilde", "vectors"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.losses == b.losses
    assert not np.array_equal(a.vectors, c.vectors)


def test_no_cells_or_no_epochs_leave_the_initial_values():
    cfg = GloveConfig(dim=3, epochs=2, seed=4)
    start = initial_params(6, 3, seed=4)
    empty = train_glove(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), 6, cfg)
    assert empty.losses == [0.0, 0.0]
    np.testing.assert_array_equal(empty.W, start.W)
    i, j, x = tiny_cells()
    none = train_glove(i, j, x, 6, GloveConfig(dim=3, epochs=0, seed=4))
    assert none.losses == []
    np.testing.assert_array_equal(none.b_tilde, start.b_tilde)


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match=re.escape("ids must lie in [0, 5)")):
        train_glove([0, 5], [1, 1], [1.0, 1.0], 5, GloveConfig(dim=2, epochs=1))
    with pytest.raises(ValueError, match="^i, j and x must be 1-D arrays of equal length$"):
        train_glove([0, 1], [1], [1.0, 1.0], 5, GloveConfig(dim=2, epochs=1))
    with pytest.raises(ValueError, match=re.escape("vectors must be one of ('W+W_tilde', 'W'), got 'W_tilde'")):
        GloveConfig(vectors="W_tilde")


# --- (4) shard reader ---------------------------------------------------------------------------


def write_shards(uri, blocks_per_shard):
    os.makedirs(os.path.join(uri, "matrix"), exist_ok=True)
    m = len(blocks_per_shard)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for n, blocks in enumerate(blocks_per_shard):
        path = os.path.join(uri, "matrix", f"part-{n:05d}-of-{m:05d}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, options) as w:
            for bi, bj, bx in blocks:
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "i": tf.train.Feature(int64_list=tf.train.Int64List(value=bi)),
                    "j": tf.train.Feature(int64_list=tf.train.Int64List(value=bj)),
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=bx)),
                }))
                w.write(ex.SerializeToString())


def test_shard_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vocab = 40
    cells = rng.permutation(vocab * vocab)[:300]
    i, j = cells // vocab, cells % vocab
    x = rng.uniform(0.1, 200, size=300).astype(np.float32)
    cuts = [0, 1, 70, 150, 151, 300]  # blocks of sizes 1, 69, 80, 1, 149
    blocks = [(i[a:b].tolist(), j[a:b].tolist(), x[a:b].tolist()) for a, b in zip(cuts, cuts[1:])]
    write_shards(str(tmp_path), [blocks[:2], blocks[2:], []])  # the last shard is empty

    ri, rj, rx = read_cooccurrence_shards(str(tmp_path))
    assert (ri.dtype, rj.dtype, rx.dtype) == (np.int32, np.int32, np.float32)
    got = sorted(zip(ri.tolist(), rj.tolist(), rx.tolist()))
    want = sorted(zip(i.tolist(), j.tolist(), x.tolist()))
    assert got == want


def test_shard_reader_rejects_bad_artifacts(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"no co-occurrence shards under {tmp_path / 'missing' / 'matrix'}")):
        read_cooccurrence_shards(str(tmp_path / "missing"))
    write_shards(str(tmp_path / "ragged"), [[([0, 1], [1], [1.0, 2.0])]])
    with pytest.raises(ValueError, match="differ in length"):
        read_cooccurrence_shards(str(tmp_path / "ragged"))
    write_shards(str(tmp_path / "dup"), [[([0, 1], [1, 1], [1.0, 2.0])], [([0], [1], [3.0])]])
    with pytest.raises(ValueError, match="more than once"):
        read_cooccurrence_shards(str(tmp_path / "dup"))
    write_shards(str(tmp_path / "zero"), [[([0], [1], [0.0])]])
    with pytest.raises(ValueError, match="positive"):
        read_cooccurrence_shards(str(tmp_path / "zero"))


# --- (5) GloVe text format ----------------------------------------------------------------------


def test_glove_text_round_trip(tmp_path):
    words = ["python", "c++", "naïve", "<unk>", "3.5"]
    vectors = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    path = str(tmp_path / "vectors.txt")
    save_glove_text(path, words, vectors)
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 5 and lines[1].split(" ")[0] == "c++" and len(lines[1].split(" ")) == 8
    got_words, got = load_glove_text(path)
    assert got_words == words
    np.testing.assert_allclose(got, vectors, atol=5e-7)
    with pytest.raises(ValueError, match="^word 'two words' is empty or contains whitespace$"):
        save_glove_text(path, ["two words"], vectors[:1])
    with pytest.raises(ValueError, match=re.escape("2 words for vectors of shape (5, 7)")):
        save_glove_text(path, words[:2], vectors)


def test_epoch_logger_writes_tensorboard_scalars(tmp_path):
    lines = []
    logger = EpochLogger(nonzeros=1000, epochs=2, log_dir=str(tmp_path), print_fn=lines.append)
    logger(1, 500.0, 0.5)
    logger(2, 400.0, 0.5)
    logger.close()
    assert len(lines) == 2 and "epoch 2/2" in lines[1]
    tags = {}
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append((event.step, float(tf.make_ndarray(v.tensor))))
    assert tags["glove/loss"] == [(1, 500.0), (2, 400.0)]
    assert tags["glove/cost_glove_c"][0] == (1, pytest.approx(0.25))
    assert tags["glove/nonzeros_per_second"][0] == (1, pytest.approx(2000.0))
