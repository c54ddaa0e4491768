"""The path helpers recovery and garbage collection decide with."""

from __future__ import annotations

import os

from orchestration.pipeline_dirs import PathSet, format_bytes, is_within, remove_tree, tree_size


def test_path_set_overlaps_the_same_path_its_ancestors_and_descendants_only():
    paths = PathSet(["/r/Trainer/model/7", "/r/Pusher/pushed_model/9/value", ""])
    assert paths.overlaps("/r/Trainer/model/7")
    assert paths.overlaps("/r/Trainer/model/7/")
    assert paths.overlaps("/r/Trainer/model/7/variables/x")  # inside a kept path
    assert paths.overlaps("/r/Trainer")  # holds a kept path
    assert paths.overlaps("/r/Pusher/pushed_model/9")
    assert not paths.overlaps("/r/Trainer/model/70")  # a sibling sharing a name prefix
    assert not paths.overlaps("/r/Trainer/model/6")
    assert not paths.overlaps("/r/Evaluator")
    assert not PathSet().overlaps("/r")


def test_is_within_resolves_links(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "link")
    assert is_within(str(root / "a"), str(root))
    assert not is_within(str(root), str(root))
    assert not is_within(str(root / "link"), str(root))
    assert not is_within(str(root / ".." / "outside"), str(root))


def test_tree_size_and_remove_tree(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "f").write_bytes(b"x" * 10)
    (tmp_path / "d" / "e" / "g").write_bytes(b"x" * 5)
    (tmp_path / "target").write_bytes(b"t" * 100)
    os.symlink(tmp_path / "target", tmp_path / "d" / "link")
    assert tree_size(str(tmp_path / "d")) == 15  # the link counts nothing
    assert tree_size(str(tmp_path / "missing")) == 0
    remove_tree(str(tmp_path / "d"))
    remove_tree(str(tmp_path / "missing"))
    assert not (tmp_path / "d").exists() and (tmp_path / "target").read_bytes() == b"t" * 100


def test_format_bytes():
    assert [format_bytes(n) for n in (0, 812, 4300, 43_000_000, 1_400_000_000)] == [
        "0 B", "812 B", "4.2 KiB", "41 MiB", "1.3 GiB"]
