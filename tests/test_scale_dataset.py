"""data/scale_dataset.py on the tiny dataset: determinism, sizes, ids, judgments by the occupation rule,
the CV rules, and that scaled datasets pass the dataset's file checks (dataset.files.check_dataset, what
FileCheck runs) and DataCheck's cross-reference checks (components.data_check.checks, on Beam: slow)."""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import os
import re
import shutil
import sys
from collections import defaultdict

import pytest

from dataset import files

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")
SOC_CODE = re.compile(r"\d{2}-\d{4}")
DATASET_FILES = ("jobs/jobs.csv", "cvs/cvs.csv", "judgments/judgments.csv", "corpus/corpus.csv")

_spec = importlib.util.spec_from_file_location("scale_dataset",
                                               os.path.join(PROJECT_ROOT, "data", "scale_dataset.py"))
scale = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = scale
_spec.loader.exec_module(scale)


def kind_rows(data_dir: str, kind: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(data_dir, kind, "*.csv"))):
        with open(path, newline="", encoding="utf-8") as f:
            rows.extend(csv.DictReader(f))
    return rows


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def run(out, factor: int, *options: str, source: str = TINY) -> str:
    assert scale.main(["--source", source, "--factor", str(factor), "--out", str(out), *options]) == 0
    return str(out)


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory) -> str:
    return run(tmp_path_factory.mktemp("scaled") / "tiny3", 3)


def test_same_seed_gives_the_same_bytes_another_seed_other_texts(tmp_path, tiny3):
    again = run(tmp_path / "again", 3)
    other = run(tmp_path / "other", 3, "--seed", "7")
    for rel in DATASET_FILES:
        assert read_bytes(os.path.join(again, rel)) == read_bytes(os.path.join(tiny3, rel)), rel
    assert read_bytes(os.path.join(other, "cvs", "cvs.csv")) != read_bytes(os.path.join(tiny3, "cvs", "cvs.csv"))
    assert read_bytes(os.path.join(other, "corpus", "corpus.csv")) != read_bytes(
        os.path.join(tiny3, "corpus", "corpus.csv"))


def test_factor_1_writes_the_source_unchanged(tmp_path):
    out = run(tmp_path / "one", 1)
    for rel in DATASET_FILES:
        assert read_bytes(os.path.join(out, rel)) == read_bytes(os.path.join(TINY, rel)), rel


def test_sizes_scale_by_the_factor_and_every_source_row_is_kept(tiny3):
    for kind in ("jobs", "cvs", "corpus"):
        source, scaled = kind_rows(TINY, kind), kind_rows(tiny3, kind)
        assert len(scaled) == 3 * len(source), kind
        assert all(row in scaled for row in source), kind
    # Judgments follow the rule, so 3 times the CVs each judged for 3 times the jobs: 9 times.
    assert len(kind_rows(tiny3, "judgments")) == 9 * len(kind_rows(TINY, "judgments"))
    words = [sum(len(r["text"].split()) for r in kind_rows(d, "corpus")) for d in (TINY, tiny3)]
    assert 2.7 < words[1] / words[0] < 3.3
    manifest = json.loads(read_bytes(os.path.join(tiny3, scale.MANIFEST)))
    assert manifest["factor"] == 3 and manifest["seed"] == 42
    assert manifest["files"]["cvs/cvs.csv"] == {"rows": 144, "bytes": os.path.getsize(os.path.join(tiny3, "cvs", "cvs.csv"))}


def test_ids_are_unique_and_new_ones_follow_the_source_numbering(tiny3):
    jobs = [r["job_id"] for r in kind_rows(tiny3, "jobs")]
    cvs = [r["cv_id"] for r in kind_rows(tiny3, "cvs")]
    assert len(set(jobs)) == len(jobs) and len(set(cvs)) == len(cvs)
    assert cvs == [f"cv-{k:06d}" for k in range(1, 145)]
    source_jobs = [r["job_id"] for r in kind_rows(TINY, "jobs")]
    assert sorted(jobs) == sorted(j + suffix for j in source_jobs for suffix in ("", "-v02", "-v03"))
    pairs = [(r["job_id"], r["cv_id"]) for r in kind_rows(tiny3, "judgments")]
    assert len(set(pairs)) == len(pairs) and pairs == sorted(pairs)


def test_judgments_are_2_for_the_occupation_and_1_for_its_minor_group(tiny3):
    jobs = {r["job_id"]: r for r in kind_rows(tiny3, "jobs")}
    occupation_of_job = {job_id: job_id.split("-v")[0] for job_id in jobs}
    judged = {(r["job_id"], r["cv_id"]): int(r["relevance"]) for r in kind_rows(tiny3, "judgments")}
    occupation_of_cv = {}
    for (job_id, cv_id), relevance in judged.items():
        if relevance == 2:
            assert occupation_of_cv.setdefault(cv_id, occupation_of_job[job_id]) == occupation_of_job[job_id]
    cvs = kind_rows(tiny3, "cvs")
    assert set(occupation_of_cv) == {r["cv_id"] for r in cvs}
    minor = {job_id: job["minor_group"] for job_id, job in jobs.items()}
    expected = {(job_id, cv_id): 2 if occupation_of_job[job_id] == occupation else 1
                for job_id in jobs for cv_id, occupation in occupation_of_cv.items()
                if minor[job_id] == minor[occupation]}
    assert judged == expected
    # The source's CVs keep their occupation.
    for r in kind_rows(TINY, "judgments"):
        if r["relevance"] == "2":
            assert occupation_of_cv[r["cv_id"]] == r["job_id"]


def test_new_cvs_recombine_their_occupations_items_and_keep_the_cv_rules(tiny3):
    source_cvs = {r["cv_id"]: r["text"] for r in kind_rows(TINY, "cvs")}
    source_occupation = {r["cv_id"]: r["job_id"] for r in kind_rows(TINY, "judgments") if r["relevance"] == "2"}
    items = defaultdict(lambda: (set(), set()))
    for cv_id, text in source_cvs.items():
        experience, skills = scale.cv_items(text)
        items[source_occupation[cv_id]][0].update(experience)
        items[source_occupation[cv_id]][1].update(skills)
    all_tasks = set().union(*(e for e, _ in items.values()))
    jobs = {r["job_id"]: r for r in kind_rows(tiny3, "jobs")}
    occupation_of_cv = {r["cv_id"]: r["job_id"] for r in kind_rows(tiny3, "judgments")
                        if r["relevance"] == "2" and r["job_id"] in items}
    texts = [r["text"] for r in kind_rows(tiny3, "cvs")]
    assert len(set(texts)) == len(texts)
    for row in kind_rows(tiny3, "cvs"):
        occupation = occupation_of_cv[row["cv_id"]]
        assert jobs[occupation]["title"].lower() not in row["text"].lower()
        assert not SOC_CODE.search(row["text"])
        experience, skills = scale.cv_items(row["text"])
        assert set(skills) <= items[occupation][1]
        assert set(experience) <= all_tasks  # own tasks, or a neighbour's for a career changer
        assert len(set(experience) & items[occupation][0]) >= 3


def test_job_variants_extend_the_description_with_the_occupations_tasks(tiny3):
    source = {r["job_id"]: r for r in kind_rows(TINY, "jobs")}
    tasks = defaultdict(set)
    occupation = {r["cv_id"]: r["job_id"] for r in kind_rows(TINY, "judgments") if r["relevance"] == "2"}
    for r in kind_rows(TINY, "cvs"):
        tasks[occupation[r["cv_id"]]].update(scale.cv_items(r["text"])[0])
    for job in kind_rows(tiny3, "jobs"):
        base = source[job["job_id"].split("-v")[0]]
        assert (job["title"], job["major_group"], job["minor_group"]) == (
            base["title"], base["major_group"], base["minor_group"])
        if job["job_id"] != base["job_id"]:
            assert job["text"].startswith(base["text"] + " Duties: ")
            duties = job["text"][len(base["text"] + " Duties: "):].rstrip(".").split("; ")
            assert 2 <= len(duties) <= 4 and set(duties) <= tasks[base["job_id"]]


def test_scaled_dataset_passes_the_file_check(tiny3):
    warnings: list = []
    summaries = files.check_dataset(tiny3, warnings=warnings)
    assert warnings == []
    assert {s.kind: s.rows for s in summaries} == {"jobs": 48, "cvs": 144, "judgments": 864, "corpus": 600}


def test_a_source_whose_judgments_break_the_rule_is_refused(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(TINY, source)
    path = source / "judgments" / "judgments.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    dropped = next(k for k, line in enumerate(lines) if line.rstrip().endswith(",1"))
    path.write_text("".join(lines[:dropped] + lines[dropped + 1:]), encoding="utf-8")
    with pytest.raises(SystemExit, match="judgments are not exactly 2 for a CV's occupation"):
        scale.scale(str(source), str(tmp_path / "out"), 2, 42)


def test_a_non_empty_out_is_refused_without_force(tmp_path, capsys):
    out = run(tmp_path / "out", 2)
    with pytest.raises(SystemExit):
        run(out, 2)
    assert "is not empty" in capsys.readouterr().err
    assert run(out, 2, "--force") == out


@pytest.mark.slow
def test_scaled_dataset_passes_data_checks_cross_reference_checks(tiny3):
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.testing.util import assert_that, equal_to

    from components.data_check import checks

    def example(row: dict, ints=("major_group", "relevance")) -> bytes:
        e = tf.train.Example()
        for name, value in row.items():
            if name in ints:
                e.features.feature[name].int64_list.value.append(int(value))
            else:
                e.features.feature[name].bytes_list.value.append(value.encode("utf-8"))
        return e.SerializeToString()

    jobs = kind_rows(tiny3, "jobs")
    with beam.Pipeline() as p:
        ranking, summary = checks.check_and_join(
            p | "Cvs" >> beam.Create([example(r) for r in kind_rows(tiny3, "cvs")]),
            p | "Corpus" >> beam.Create([example(r) for r in kind_rows(tiny3, "corpus")]),
            p | "Jobs" >> beam.Create([("eval", example(r)) for r in jobs]),
            p | "Judgments" >> beam.Create([example(r) for r in kind_rows(tiny3, "judgments")]), 10,
            relevance_threshold=1.0, slice_features=())
        assert_that(summary | beam.Filter(lambda r: r["record"] == checks.PROBLEM), equal_to([]),
                    label="NoProblems")
        assert_that(ranking | beam.Map(lambda kv: tf.train.Example.FromString(kv[1]).features
                                       .feature["job_id"].bytes_list.value[0].decode()),
                    equal_to([r["job_id"] for r in jobs]), label="EveryJobRanked")
