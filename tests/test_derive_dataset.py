"""data/derive_dataset.py on the tiny dataset: strict judgments, distractor CVs, determinism, and the
derived directories pass the dataset's file checks (dataset.files.check_dataset, what FileCheck runs)."""

from __future__ import annotations

import csv
import glob
import importlib.util
import os
import re
import sys

import pytest

from dataset import files

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")

_spec = importlib.util.spec_from_file_location("derive_dataset",
                                               os.path.join(PROJECT_ROOT, "data", "derive_dataset.py"))
derive = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = derive
_spec.loader.exec_module(derive)


def rows(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def kind_rows(data_dir: str, kind: str) -> list[dict]:
    return [r for path in sorted(glob.glob(os.path.join(data_dir, kind, "*.csv"))) for r in rows(path)]


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def run(out, *options: str) -> str:
    assert derive.main(["--source", TINY, "--out", str(out), *options]) == 0
    return str(out)


def passes_file_check(data_dir: str) -> None:
    warnings: list = []
    summaries = files.check_dataset(data_dir, warnings=warnings)
    assert warnings == []
    assert {s.kind for s in summaries} == set(files.KINDS)


def test_strict_drops_exactly_the_relevance_1_judgments(tmp_path, capsys):
    out = run(tmp_path / "strict", "--strict")
    source = kind_rows(TINY, "judgments")
    derived = kind_rows(out, "judgments")
    assert derived == [r for r in source if r["relevance"] == "2"]
    assert len(source) - len(derived) == sum(r["relevance"] == "1" for r in source) == 48
    for rel in ("cvs/cvs.csv", "jobs/jobs.csv", "corpus/corpus.csv"):
        assert read_bytes(os.path.join(out, rel)) == read_bytes(os.path.join(TINY, rel))
    assert not os.path.exists(os.path.join(out, derive.DISTRACTORS_FILE))
    passes_file_check(out)
    assert "dropped 48 of relevance 1" in capsys.readouterr().out


def test_distractors_are_long_unjudged_cvs_listed_in_the_side_file(tmp_path):
    out = run(tmp_path / "d", "--distractors", "12")
    source_cvs = {r["cv_id"]: r["text"] for r in kind_rows(TINY, "cvs")}
    cvs = kind_rows(out, "cvs")
    ids = [r["cv_id"] for r in cvs]
    assert len(ids) == len(set(ids)) == len(source_cvs) + 12
    added = [r for r in cvs if r["cv_id"] not in source_cvs]
    assert [r["cv_id"] for r in added] == [f"cv-d{k:05d}" for k in range(1, 13)]
    assert len({r["text"] for r in cvs}) == len(cvs)
    # Unjudged: the judgments are the source's, byte for byte.
    assert read_bytes(os.path.join(out, "judgments", "judgments.csv")) == read_bytes(
        os.path.join(TINY, "judgments", "judgments.csv"))

    occupation_of = {r["cv_id"]: r["job_id"] for r in kind_rows(TINY, "judgments") if r["relevance"] == "2"}
    items_of = {}
    for cv, job in occupation_of.items():
        items_of.setdefault(job, set()).update(
            item.lower() for part in derive.cv_items(source_cvs[cv]) for item in part if len(item.split()) >= 6)
    own_items = {job: items - set().union(*(v for j, v in items_of.items() if j != job))
                 for job, items in items_of.items()}
    assert all(own_items.values())
    side = rows(os.path.join(out, derive.DISTRACTORS_FILE))
    assert [r["cv_id"] for r in side] == [r["cv_id"] for r in added]
    for distractor, listed in zip(added, side):
        text = distractor["text"]
        assert len(text.split()) >= 300
        assert text == " ".join(text.split()) and not re.search(r"\d{2}-\d{4}", text)
        job_ids = listed["job_ids"].split(" ")
        assert 2 <= len(job_ids) <= 4 and len(set(job_ids)) == len(job_ids)
        # Each listed occupation contributed items of its CVs, and no other occupation did (judged
        # by the items of at least 6 words that only one occupation's CVs have).
        lowered = text.lower()
        for job, items in own_items.items():
            assert any(item in lowered for item in items) == (job in job_ids), (distractor["cv_id"], job)
    passes_file_check(out)


def test_distractors_are_deterministic_for_a_seed(tmp_path):
    first = run(tmp_path / "a", "--distractors", "6", "--seed", "7")
    again = run(tmp_path / "b", "--distractors", "6", "--seed", "7")
    other = run(tmp_path / "c", "--distractors", "6", "--seed", "8")
    more = run(tmp_path / "e", "--distractors", "9", "--seed", "7")
    for rel in (derive.DISTRACTOR_CVS_FILE, derive.DISTRACTORS_FILE):
        assert read_bytes(os.path.join(first, rel)) == read_bytes(os.path.join(again, rel))
        assert read_bytes(os.path.join(first, rel)) != read_bytes(os.path.join(other, rel))
    # Distractor k does not depend on how many are made.
    assert rows(os.path.join(more, derive.DISTRACTOR_CVS_FILE))[:6] == rows(
        os.path.join(first, derive.DISTRACTOR_CVS_FILE))


def test_strict_and_distractors_combine(tmp_path):
    out = run(tmp_path / "both", "--strict", "--distractors", "3")
    assert {r["relevance"] for r in kind_rows(out, "judgments")} == {"2"}
    assert len(rows(os.path.join(out, derive.DISTRACTORS_FILE))) == 3
    assert len(kind_rows(out, "cvs")) == 48 + 3
    passes_file_check(out)
    # Strict on a dataset with distractors keeps them and their side file; adding more is refused.
    again = derive.main(["--source", out, "--out", str(tmp_path / "again"), "--strict"])
    assert again == 0
    assert read_bytes(os.path.join(tmp_path, "again", derive.DISTRACTORS_FILE)) == read_bytes(
        os.path.join(out, derive.DISTRACTORS_FILE))
    with pytest.raises(SystemExit, match="already has distractors"):
        derive.main(["--source", out, "--out", str(tmp_path / "more"), "--distractors", "2"])


def test_refuses_a_non_empty_output_without_force(tmp_path, capsys):
    out = run(tmp_path / "out", "--distractors", "2")
    with pytest.raises(SystemExit) as refused:
        derive.main(["--source", TINY, "--out", out, "--strict"])
    assert refused.value.code == 2 and "is not empty; pass --force" in capsys.readouterr().err
    run(out, "--strict", "--force")  # replaces the earlier output: no stale distractors remain
    assert not os.path.exists(os.path.join(out, derive.DISTRACTORS_FILE))
    assert not os.path.exists(os.path.join(out, derive.DISTRACTOR_CVS_FILE))
    passes_file_check(out)


def test_refuses_nothing_to_derive_and_the_source_as_output(tmp_path):
    with pytest.raises(SystemExit):
        derive.main(["--source", TINY, "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        derive.main(["--source", TINY, "--out", TINY, "--strict", "--force"])


def test_cv_items_reads_the_build_layout_and_falls_back_to_clauses():
    assert derive.cv_items("Experience: Fix brakes; Tune engines. Skills: Repair vehicles; Drive.") == (
        ["Fix brakes", "Tune engines"], ["Repair vehicles", "Drive"])
    assert derive.cv_items("I fix brakes. I tune engines; and more") == (
        ["I fix brakes", "I tune engines", "and more"], [])
    assert derive.as_clause("Prepare budgets") == "prepare budgets"
    assert derive.as_clause("CAD drawings") == "CAD drawings"
