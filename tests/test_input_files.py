"""The dataset's file contract (dataset/files.py), FileCheck and DatasetExampleGen.

Fast: one test per kind of bad input, each asserting the exact file, line and problem; header-only
files (a problem when no file of their kind has rows, a warning otherwise); what is accepted (byte
order mark, CRLF, quoted multi-line fields, large fields, columns in any order); the fingerprint.
Slow (real TFX, ML Metadata and Beam): FileCheck and DatasetExampleGen over the tiny dataset written
with BOM and CRLF give the same examples as over the plain files, which the pipeline's schemas
accept; a non-UTF-8 byte or header-only jobs fail FileCheck (recorded FAILED in ML Metadata) before
any examples are written; a header-only CV file beside one with rows is a warning recorded on
FileCheck's output, and the ExampleGens read past it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import re
import shutil

import pytest

from dataset import files
from dataset.files import InputFileError, Problem
from pipeline.beam import IN_PROCESS

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")

JOBS_HEADER = b"job_id,title,text,major_group,minor_group\n"
JUDGMENTS_HEADER = b"job_id,cv_id,relevance\n"


def write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def problems_of(path: str, kind: str) -> list[Problem]:
    """The problems check_file reports, after checking that read_rows raises the first of them and
    that the message names each one as `path, line N: message`."""
    with pytest.raises(InputFileError) as raised:
        files.check_file(path, kind)
    for problem in raised.value.problems:
        where = path if problem.line is None else f"{path}, line {problem.line}"
        assert f"\n  - {where}: {problem.message}" in str(raised.value)
    with pytest.raises(InputFileError) as first:
        list(files.read_rows(path, kind))
    assert first.value.problems == raised.value.problems[:1]
    return raised.value.problems


def rows(path: str, kind: str) -> list:
    return list(files.read_rows(path, kind))


# ---- one test per bad input ----------------------------------------------------------------------

def test_not_utf8(tmp_path):
    path = write(tmp_path / "cvs.csv", b"cv_id,text\ncv-1,ok\ncv-2,\xff\xfe broken\n")
    assert problems_of(path, "cvs") == [Problem(path, 3, "not UTF-8 (byte 0xff at offset 24)")]


def test_not_utf8_in_a_quoted_multiline_field_names_the_line_of_the_byte(tmp_path):
    path = write(tmp_path / "cvs.csv", b'cv_id,text\r\ncv-1,"one\r\ntwo \xe9\r\n"\r\n')
    assert problems_of(path, "cvs") == [Problem(path, 3, "not UTF-8 (byte 0xe9 at offset 27)")]


def test_utf16_file_is_not_utf8(tmp_path):
    path = write(tmp_path / "cvs.csv", "cv_id,text\ncv-1,ok\n".encode("utf-16"))
    assert problems_of(path, "cvs") == [Problem(
        path, 1, "not UTF-8 (byte 0xff at offset 0); the file starts with a UTF-16 byte order mark: "
                 "save it as UTF-8")]


def test_missing_column(tmp_path):
    path = write(tmp_path / "jobs.csv", b"job_id,title,major_group,minor_group\nj1,T,13,13-10\n")
    assert problems_of(path, "jobs") == [Problem(
        path, 1, "missing column 'text' (the header is 'job_id,title,major_group,minor_group'; "
                 "jobs files have job_id,title,text,major_group,minor_group)")]


def test_extra_column(tmp_path):
    path = write(tmp_path / "judgments.csv", b"job_id,cv_id,relevance,note\nj1,c1,2,x\n")
    assert problems_of(path, "judgments") == [Problem(
        path, 1, "unexpected column 'note' (the header is 'job_id,cv_id,relevance,note'; judgments "
                 "files have job_id,cv_id,relevance)")]


def test_repeated_column(tmp_path):
    path = write(tmp_path / "cvs.csv", b"cv_id,text,text\ncv-1,a,b\n")
    assert problems_of(path, "cvs") == [Problem(
        path, 1, "repeated column 'text' (the header is 'cv_id,text,text'; cvs files have cv_id,text)")]


def test_file_without_header(tmp_path):
    path = write(tmp_path / "cvs.csv", b"cv-1,Experience: welding\n")
    assert problems_of(path, "cvs") == [Problem(
        path, 1, "missing columns 'cv_id', 'text'; unexpected columns 'cv-1', 'Experience: welding' "
                 "(the header is 'cv-1,Experience: welding'; cvs files have cv_id,text)")]


def test_wrong_field_count(tmp_path):
    path = write(tmp_path / "cvs.csv", b"cv_id,text\ncv-1,ok\ncv-2,welding, brazing\n\ncv-3\n")
    assert problems_of(path, "cvs") == [
        Problem(path, 3, "3 fields; expected 2 (cv_id,text): quote a field that contains commas"),
        Problem(path, 5, "1 field; expected 2 (cv_id,text)"),
    ]


def test_field_over_the_size_limit(tmp_path):
    text = b"x" * 1_200_000
    path = write(tmp_path / "cvs.csv", b'cv_id,text\ncv-1,ok\ncv-2,"a\nb"\ncv-3,"' + text + b'"\n')
    assert problems_of(path, "cvs") == [
        Problem(path, 5, "field 'text' has 1,200,000 characters; the limit is 1,048,576")]


def test_field_beyond_what_the_parser_reads(tmp_path):
    path = write(tmp_path / "corpus.csv", b'text\nfine\n"' + b"x" * (16 * files.MAX_FIELD_CHARS + 1))
    assert problems_of(path, "corpus") == [Problem(
        path, 3, "a field has more than 16,777,216 characters; the limit is 1,048,576 "
                 "(is a closing quote missing?)")]


def test_unclosed_quote(tmp_path):
    path = write(tmp_path / "cvs.csv", b'cv_id,text\ncv-1,"Welding\ncv-2,Brazing\n')
    assert problems_of(path, "cvs") == [Problem(
        path, 2, "a quoted field starting on this line is not closed: the file ends inside it "
                 "(a '\"' is missing)")]


def test_stray_quote(tmp_path):
    path = write(tmp_path / "cvs.csv", b'cv_id,text\ncv-1,ok\ncv-2,"Welding" and brazing\n')
    assert problems_of(path, "cvs") == [Problem(
        path, 3, "not valid CSV: ',' expected after '\"' (inside a quoted field, write a '\"' as "
                 "'\"\"')")]


def test_non_integer_major_group(tmp_path):
    path = write(tmp_path / "jobs.csv", JOBS_HEADER + b"j1,T,text,13,13-10\nj2,T,text,thirteen,13-10\n"
                 b"j3,T,text,1.5,13-10\nj4,T,text,99999999999999999999,13-10\n")
    assert problems_of(path, "jobs") == [
        Problem(path, 3, "field 'major_group' is 'thirteen', not an integer"),
        Problem(path, 4, "field 'major_group' is '1.5', not an integer"),
        Problem(path, 5, "field 'major_group' is '99999999999999999999', beyond the 64-bit integer "
                         "range"),
    ]


def test_non_integer_relevance(tmp_path):
    path = write(tmp_path / "judgments.csv", JUDGMENTS_HEADER + b"j1,c1,2\nj1,c2,high\n")
    assert problems_of(path, "judgments") == [
        Problem(path, 3, "field 'relevance' is 'high', not an integer")]


def test_empty_file(tmp_path):
    path = write(tmp_path / "cvs.csv", b"")
    assert problems_of(path, "cvs") == [Problem(
        path, 1, "the file is empty (0 bytes); cvs files have the header line 'cv_id,text' and one "
                 "row per line")]


def test_whitespace_only_file(tmp_path):
    path = write(tmp_path / "jobs.csv", b" \r\n\n\t\n")
    assert problems_of(path, "jobs") == [Problem(
        path, 1, "the file is empty (only whitespace); jobs files have the header line "
                 "'job_id,title,text,major_group,minor_group' and one row per line")]


def test_blank_first_line(tmp_path):
    path = write(tmp_path / "cvs.csv", b"\ncv_id,text\ncv-1,ok\n")
    assert problems_of(path, "cvs") == [Problem(
        path, 1, "the first line is blank; it must be the header 'cv_id,text'")]


# ---- header-only files: judged against the other files of their kind ----------------------------

def test_a_header_only_file_reads_as_no_rows(tmp_path):
    path = write(tmp_path / "judgments.csv", b"\xef\xbb\xbfjob_id,cv_id,relevance\r\n\r\n")
    assert rows(path, "judgments") == []
    problems: list[Problem] = []
    assert list(files.read_rows(path, "judgments", problems)) == [] and problems == []
    assert files.check_file(path, "judgments").rows == 0


def tiny_dataset(data) -> dict:
    """A valid dataset of one file per kind under `data`; {kind: path}."""
    return {
        "cvs": write(data / "cvs" / "cvs.csv", b"cv_id,text\ncv-1,Welding\n"),
        "jobs": write(data / "jobs" / "jobs.csv", JOBS_HEADER + b"j1,Welder,Weld,51,51-41\n"),
        "judgments": write(data / "judgments" / "judgments.csv", JUDGMENTS_HEADER + b"j1,cv-1,2\n"),
    }


def test_the_only_file_of_a_kind_header_only_stops_the_check(tmp_path):
    data = tmp_path / "data"
    jobs = tiny_dataset(data)["jobs"]
    write(jobs, JOBS_HEADER + b"\n")
    warnings: list[Problem] = []
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(data), warnings=warnings)
    assert raised.value.problems == [Problem(jobs, None, "header only, no rows")]
    assert str(raised.value) == ("the input files have problems (1 problem):\n"
                                 f"  - {jobs}: header only, no rows")
    assert warnings == []


def test_every_file_of_a_kind_header_only_names_each(tmp_path):
    data = tmp_path / "data"
    tiny_dataset(data)
    a = write(data / "cvs" / "cvs.csv", b"cv_id,text\n")
    b = write(data / "cvs" / "more.csv", b"\xef\xbb\xbftext,cv_id\r\n\r\n")
    corpus = write(data / "corpus" / "corpus.csv", b"text\n")
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(data))
    assert raised.value.problems == [Problem(a, None, "header only, no rows"),
                                     Problem(b, None, "header only, no rows"),
                                     Problem(corpus, None, "header only, no rows")]


def test_a_header_only_file_beside_files_with_rows_is_a_warning(tmp_path):
    data = tmp_path / "data"
    tiny_dataset(data)
    extra = write(data / "cvs" / "extra.csv", b"cv_id,text\n")
    empty_corpus = write(data / "corpus" / "b.csv", b"text\n\n")
    write(data / "corpus" / "a.csv", b"text\nsome domain text\n")
    warnings: list[Problem] = []
    summaries = files.check_dataset(str(data), warnings=warnings)
    assert warnings == [Problem(extra, None, "header only, no rows; ignored"),
                        Problem(empty_corpus, None, "header only, no rows; ignored")]
    assert [str(w) for w in warnings] == [f"{extra}: header only, no rows; ignored",
                                          f"{empty_corpus}: header only, no rows; ignored"]
    assert [(os.path.relpath(s.path, data), s.rows) for s in summaries] == [
        ("cvs/cvs.csv", 1), ("cvs/extra.csv", 0), ("jobs/jobs.csv", 1),
        ("judgments/judgments.csv", 1), ("corpus/a.csv", 1), ("corpus/b.csv", 0)]
    # Without a list the warnings are not handed back; the check passes all the same.
    assert files.check_dataset(str(data)) == summaries


def test_a_header_only_file_beside_a_broken_one_is_only_a_warning(tmp_path):
    # The broken file may well have rows once it is fixed: only its own problem is reported.
    data = tmp_path / "data"
    tiny_dataset(data)
    broken = write(data / "jobs" / "jobs.csv", JOBS_HEADER + b"j1,Welder,Weld,x,51-41\n")
    write(data / "jobs" / "more.csv", JOBS_HEADER)
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(data))
    assert raised.value.problems == [Problem(broken, 2, "field 'major_group' is 'x', not an integer")]


@pytest.mark.parametrize("rows_by_path, problems, warnings", [
    ({}, [], []),
    ({"a": 3, "b": 1}, [], []),
    ({"a": 0}, [Problem("a", None, "header only, no rows")], []),
    ({"a": 0, "b": 0}, [Problem("a", None, "header only, no rows"),
                        Problem("b", None, "header only, no rows")], []),
    ({"a": 0, "b": 2, "c": 0}, [], [Problem("a", None, "header only, no rows; ignored"),
                                    Problem("c", None, "header only, no rows; ignored")]),
    # Unknown rows (a file with problems): the kind may have rows, so an empty sibling is a warning.
    ({"a": None, "b": 0}, [], [Problem("b", None, "header only, no rows; ignored")]),
])
def test_files_without_rows(rows_by_path, problems, warnings):
    assert files.files_without_rows(rows_by_path) == (problems, warnings)


def test_missing_required_parts(tmp_path):
    data = tmp_path / "data"
    write(data / "cvs" / "cvs.csv", b"cv_id,text\ncv-1,ok\n")
    os.makedirs(data / "jobs")
    write(data / "jobs" / "jobs.txt", JOBS_HEADER + b"j1,T,text,13,13-10\n")
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(data))
    assert raised.value.problems == [
        Problem(str(data / "jobs"), None, "no *.csv files in this directory; a dataset needs jobs "
                "files (job_id,title,text,major_group,minor_group) in jobs/*.csv"),
        Problem(str(data / "judgments"), None, "no such directory; a dataset needs judgments files "
                "(job_id,cv_id,relevance) in judgments/*.csv"),
    ]
    assert str(raised.value) == (
        "the input files have problems (2 problems):\n"
        f"  - {data}/jobs: no *.csv files in this directory; a dataset needs jobs files "
        "(job_id,title,text,major_group,minor_group) in jobs/*.csv\n"
        f"  - {data}/judgments: no such directory; a dataset needs judgments files "
        "(job_id,cv_id,relevance) in judgments/*.csv")


def test_missing_dataset_directory(tmp_path):
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(tmp_path / "nowhere"))
    assert raised.value.problems == [Problem(
        str(tmp_path / "nowhere"), None, "no such directory; a dataset is a directory with "
        "cvs/*.csv, jobs/*.csv, judgments/*.csv, corpus/*.csv")]


def test_check_dataset_reports_the_problems_of_every_file(tmp_path):
    data = tmp_path / "data"
    cvs = write(data / "cvs" / "a.csv", b"cv_id,text\ncv-1,ok\ncv-2,\xff\n")
    write(data / "cvs" / "b.csv", b"cv_id,text\ncv-3,fine\n")
    jobs = write(data / "jobs" / "jobs.csv", JOBS_HEADER + b"j1,T,text,x,13-10\nj2,T,text,13\n")
    judgments = write(data / "judgments" / "judgments.csv", b"")
    corpus = write(data / "corpus" / "corpus.csv", b"body\nsome text\n")
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(data))
    assert raised.value.problems == [
        Problem(cvs, 3, "not UTF-8 (byte 0xff at offset 24)"),
        Problem(jobs, 2, "field 'major_group' is 'x', not an integer"),
        Problem(jobs, 3, "4 fields; expected 5 (job_id,title,text,major_group,minor_group)"),
        Problem(judgments, 1, "the file is empty (0 bytes); judgments files have the header line "
                              "'job_id,cv_id,relevance' and one row per line"),
        Problem(corpus, 1, "missing column 'text'; unexpected column 'body' (the header is 'body'; "
                           "corpus files have text)"),
    ]
    assert raised.value.truncated is False
    assert str(raised.value).startswith("the input files have problems (5 problems):\n  - ")


def test_check_dataset_stops_at_max_problems(tmp_path):
    data = tmp_path / "data"
    write(data / "cvs" / "cvs.csv", b"cv_id,text\n" + b"".join(
        b"cv-%d,a,b\n" % k for k in range(30)))
    later = write(data / "jobs" / "jobs.csv", b"")
    write(data / "judgments" / "judgments.csv", JUDGMENTS_HEADER + b"j1,c1,2\n")
    with pytest.raises(InputFileError) as raised:
        files.check_dataset(str(data), max_problems=20)
    assert [p.line for p in raised.value.problems] == list(range(2, 22))
    assert later not in {p.path for p in raised.value.problems}
    assert raised.value.truncated is True
    assert str(raised.value).startswith(
        "the input files have problems (20 problems; checking stopped there, there may be more):\n")


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown file kind 'resumes'"):
        files.columns("resumes")


# ---- what is accepted ----------------------------------------------------------------------------

JOBS_PLAIN = (JOBS_HEADER
              + b'13-1071.00,HR Specialists,"Recruit, screen, interview.",13,13-10\n'
              + b'13-2011.00,Accountants,"Examine records.\nAudit ""statements"".\n\nAdvise.",13,13-20\n'
              + b'\n'
              + b'13-2099.04,Fraud Examiners,,,13-20\n')
JOBS_ROWS = [
    (2, {"job_id": "13-1071.00", "title": "HR Specialists", "text": "Recruit, screen, interview.",
         "major_group": 13, "minor_group": "13-10"}),
    (3, {"job_id": "13-2011.00", "title": "Accountants",
         "text": 'Examine records.\nAudit "statements".\n\nAdvise.', "major_group": 13,
         "minor_group": "13-20"}),
    (8, {"job_id": "13-2099.04", "title": "Fraud Examiners", "text": None, "major_group": None,
         "minor_group": "13-20"}),
]


def test_rows_of_a_plain_file(tmp_path):
    path = write(tmp_path / "jobs.csv", JOBS_PLAIN)
    assert rows(path, "jobs") == JOBS_ROWS
    summary = files.check_file(path, "jobs")
    assert summary == files.FileSummary(path, "jobs", 3, len(JOBS_PLAIN),
                                        hashlib.sha256(JOBS_PLAIN).hexdigest())


def test_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path / "jobs.csv", b"\xef\xbb\xbf" + JOBS_PLAIN)
    assert rows(path, "jobs") == JOBS_ROWS


def test_crlf_is_accepted(tmp_path):
    path = write(tmp_path / "jobs.csv", JOBS_PLAIN.replace(b"\n", b"\r\n"))
    assert rows(path, "jobs") == JOBS_ROWS


def test_bom_crlf_and_quoted_multiline_fields_give_the_plain_rows(tmp_path):
    # Line ends inside quoted fields too are CRLF, as a whole-file conversion writes them.
    path = write(tmp_path / "jobs.csv", b"\xef\xbb\xbf" + JOBS_PLAIN.replace(b"\n", b"\r\n"))
    assert rows(path, "jobs") == JOBS_ROWS
    assert files.check_file(path, "jobs").rows == 3


def test_bare_cr_line_ends_are_accepted(tmp_path):
    path = write(tmp_path / "jobs.csv", JOBS_PLAIN.replace(b"\n", b"\r"))
    assert rows(path, "jobs") == JOBS_ROWS


def test_columns_in_any_order(tmp_path):
    path = write(tmp_path / "judgments.csv", b" relevance ,cv_id,job_id\n2,cv-1,j1\n, cv-2 ,j1\n")
    assert rows(path, "judgments") == [
        (2, {"job_id": "j1", "cv_id": "cv-1", "relevance": 2}),
        (3, {"job_id": "j1", "cv_id": " cv-2 ", "relevance": None}),
    ]


def test_integers_with_sign_and_spaces(tmp_path):
    path = write(tmp_path / "judgments.csv", JUDGMENTS_HEADER + b"j1,c1, 2 \nj1,c2,-1\nj1,c3,+0\n"
                 b"j1,c4,   \n")
    assert [row["relevance"] for _, row in rows(path, "judgments")] == [2, -1, 0, None]


def test_a_field_of_a_million_characters_is_accepted(tmp_path):
    text = "é" * 1_000_000  # characters, not bytes: 2,000,000 bytes of UTF-8
    path = write(tmp_path / "cvs.csv", f'cv_id,text\ncv-1,"{text}"\ncv-2,short\n'.encode())
    assert rows(path, "cvs") == [(2, {"cv_id": "cv-1", "text": text}),
                                 (3, {"cv_id": "cv-2", "text": "short"})]


def test_a_field_of_exactly_the_limit_is_accepted(tmp_path):
    path = write(tmp_path / "corpus.csv", b"text\n" + b"x" * files.MAX_FIELD_CHARS + b"\n")
    assert [len(row["text"]) for _, row in rows(path, "corpus")] == [1_048_576]


def test_bundled_dataset_is_valid():
    summaries = files.check_dataset(os.path.join(PROJECT_ROOT, "data", "onet"))
    assert [(s.kind, os.path.basename(s.path), s.rows) for s in summaries] == [
        ("cvs", "cvs.csv", 2769), ("jobs", "jobs.csv", 923), ("judgments", "judgments.csv", 52953),
        ("corpus", "corpus.csv", 13226)]


def test_dataset_files(tmp_path):
    data = tmp_path / "data"
    b = write(data / "cvs" / "b.csv", b"")
    a = write(data / "cvs" / "a.csv", b"")
    write(data / "cvs" / "notes.txt", b"")
    j = write(data / "jobs" / "jobs.csv", b"")
    assert files.dataset_files(str(data)) == {"cvs": [a, b], "jobs": [j], "judgments": [],
                                              "corpus": []}


def test_fingerprint_changes_when_a_file_changes(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TINY, data)
    before = files.fingerprint(str(data))
    assert files.fingerprint(str(data)) == before
    path = data / "judgments" / "judgments.csv"
    stat = os.stat(path)
    with open(path, "ab") as f:
        f.write(b"13-1071.00,cv-000002,0\n")
    changed = files.fingerprint(str(data))
    assert changed != before
    # Same size, new mtime.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert files.fingerprint(str(data)) not in (before, changed)
    # A new file; then a non-dataset file, which does not count.
    write(data / "corpus" / "more.csv", b"text\nmore\n")
    with_new = files.fingerprint(str(data))
    assert with_new not in (before, changed)
    write(data / "corpus" / "README.txt", b"notes")
    assert files.fingerprint(str(data)) == with_new
    # A copy elsewhere with the same files, sizes and times has the same fingerprint.
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert files.fingerprint(str(copy)) == with_new


def test_input_file_error_survives_pickling_and_beams_reraise():
    error = InputFileError([Problem("data/cvs/cvs.csv", 7, "not UTF-8 (byte 0xff at offset 1234)")])
    assert str(error) == ("the input files have problems (1 problem):\n"
                          "  - data/cvs/cvs.csv, line 7: not UTF-8 (byte 0xff at offset 1234)")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.problems, str(copy)) == (error.problems, str(error))
    # What Beam does to an exception raised in a DoFn: same type, message plus the step name.
    reraised = type(error)(error.args[0] + " [while running 'ReadRows']", *error.args[1:])
    assert isinstance(reraised, InputFileError)
    assert str(reraised) == str(error) + " [while running 'ReadRows']"


def test_read_rows_collecting_problems_skips_bad_rows(tmp_path):
    path = write(tmp_path / "judgments.csv", JUDGMENTS_HEADER + b"j1,c1,2\nj1,c2,x\nj1,c3\nj1,c4,0\n")
    problems: list[Problem] = []
    assert list(files.read_rows(path, "judgments", problems)) == [
        (2, {"job_id": "j1", "cv_id": "c1", "relevance": 2}),
        (5, {"job_id": "j1", "cv_id": "c4", "relevance": 0})]
    assert problems == [Problem(path, 3, "field 'relevance' is 'x', not an integer"),
                        Problem(path, 4, "2 fields; expected 3 (job_id,cv_id,relevance)")]


# ---- DatasetExampleGen's conversion --------------------------------------------------------------

def test_row_to_example_declares_types_and_keeps_empty_cells():
    from components.example_gen import executor

    example = executor.row_to_example(JOBS_ROWS[2][1], "jobs")
    feature = example.features.feature
    assert sorted(feature) == ["job_id", "major_group", "minor_group", "text", "title"]
    assert feature["job_id"].bytes_list.value == [b"13-2099.04"]
    assert feature["text"].WhichOneof("kind") == "bytes_list" and not feature["text"].bytes_list.value
    assert (feature["major_group"].WhichOneof("kind") == "int64_list"
            and not feature["major_group"].int64_list.value)
    numbered = executor.row_to_example({"job_id": "0042", "cv_id": "17", "relevance": 2}, "judgments")
    assert numbered.features.feature["cv_id"].bytes_list.value == [b"17"]
    assert numbered.features.feature["relevance"].int64_list.value == [2]


@pytest.mark.parametrize("pattern, kind", [("cvs/*.csv", "cvs"), ("corpus/part-*.csv", "corpus"),
                                           ("judgments/2024/*.csv", "judgments")])
def test_split_kind(pattern, kind):
    from components.example_gen import executor

    assert executor.split_kind(pattern) == kind


@pytest.mark.parametrize("pattern", ["*.csv", "resumes/*.csv", "data/cvs/*.csv"])
def test_split_kind_rejects_patterns_without_a_kind(pattern):
    from components.example_gen import executor

    with pytest.raises(ValueError, match=re.escape(f"split pattern '{pattern}': its first directory "
                                                   "must be a file kind")):
        executor.split_kind(pattern)


# ---- real TFX: FileCheck and DatasetExampleGen ---------------------------------------------------

BEAM_ARGS = list(IN_PROCESS)
PIPELINE_NAME = "input-files-test"
SCHEMAS = os.path.join(PROJECT_ROOT, "pipeline", "schemas")
# A CV with a quoted multi-line field, added to both copies of the tiny dataset.
MULTILINE_CV = b'cv-multi,"Experience: Weld pipes, ""TIG"" and MIG.\nSkills: Read blueprints."\n'


def copy_tiny(dest, bom_crlf: bool) -> str:
    """The tiny dataset plus MULTILINE_CV, optionally with a UTF-8 BOM and CRLF line ends."""
    for src in glob.glob(os.path.join(TINY, "*", "*.csv")):
        with open(src, "rb") as f:
            data = f.read()
        if os.path.basename(os.path.dirname(src)) == "cvs":
            data += MULTILINE_CV
        if bom_crlf:
            data = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
        write(os.path.join(dest, os.path.relpath(src, TINY)), data)
    return str(dest)


def files_pipeline(data_dir: str, workdir: str):
    """FileCheck, then DatasetExampleGens for texts, jobs and judgments configured as the cvrank
    pipeline configures its ExampleGens; uncached, metadata and artifacts under `workdir`."""
    from tfx import v1 as tfx

    from components.example_gen.component import DatasetExampleGen
    from components.file_check.component import FileCheck

    split = tfx.proto.Input.Split
    output_split = tfx.proto.SplitConfig.Split
    file_check = FileCheck(input_base=data_dir)
    gens = [
        DatasetExampleGen(
            input_base=data_dir,
            input_config=tfx.proto.Input(splits=[split(name="cvs", pattern="cvs/*.csv"),
                                                 split(name="corpus", pattern="corpus/*.csv")]),
        ).with_id("texts_example_gen"),
        DatasetExampleGen(
            input_base=data_dir,
            input_config=tfx.proto.Input(splits=[split(name="jobs", pattern="jobs/*.csv")]),
            output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
                splits=[output_split(name="eval", hash_buckets=1),
                        output_split(name="test", hash_buckets=1)],
                partition_feature_name="job_id")),
        ).with_id("jobs_example_gen"),
        DatasetExampleGen(
            input_base=data_dir,
            input_config=tfx.proto.Input(splits=[split(name="judgments",
                                                       pattern="judgments/*.csv")]),
            output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
                splits=[output_split(name="all", hash_buckets=1)])),
        ).with_id("judgments_example_gen"),
    ]
    for gen in gens:
        gen.add_upstream_node(file_check)
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=os.path.join(workdir, "root"),
        components=[file_check, *gens],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(workdir, "metadata.sqlite")),
        beam_pipeline_args=BEAM_ARGS,
    )


def canonical(example) -> tuple:
    """A tf.Example as a sorted tuple of (feature, kind, values): comparable, order-free."""
    out = []
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out.append((name, kind, tuple(getattr(feature, kind).value) if kind else ()))
    return tuple(sorted(out))


def run_files_pipeline(data_dir: str, workdir: str, run_id: str) -> dict:
    """Runs files_pipeline; returns {node: {split: sorted canonical examples}} and the FileCheck
    output artifact."""
    import tensorflow as tf
    from tfx.types import artifact_utils, standard_artifacts

    from metadata import mlmd
    from orchestration import runner

    runner.run_pipeline(files_pipeline(data_dir, workdir), run_id=run_id)
    store = mlmd.sqlite_store(os.path.join(workdir, "metadata.sqlite"))
    assert mlmd.run_node_states(store, PIPELINE_NAME, run_id) == {
        "FileCheck": "COMPLETE", "texts_example_gen": "COMPLETE", "jobs_example_gen": "COMPLETE",
        "judgments_example_gen": "COMPLETE"}
    examples = {}
    for node in ("texts_example_gen", "jobs_example_gen", "judgments_example_gen"):
        (mlmd_artifact,) = mlmd.run_node_outputs(store, PIPELINE_NAME, run_id, node)["examples"]
        artifact = standard_artifacts.Examples()
        artifact.set_mlmd_artifact(mlmd_artifact)
        examples[node] = {}
        for split in artifact_utils.decode_split_names(artifact.split_names):
            records = []
            for path in sorted(glob.glob(os.path.join(
                    artifact_utils.get_split_uri([artifact], split), "*.gz"))):
                records += [tf.train.Example.FromString(r.numpy())
                            for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
            examples[node][split] = sorted(canonical(e) for e in records)
    (dataset_files,) = mlmd.run_node_outputs(store, PIPELINE_NAME, run_id,
                                             "FileCheck")["dataset_files"]
    return {"examples": examples, "dataset_files": dataset_files}


def schema_anomalies(schema_name: str, canonical_examples) -> dict:
    """{feature: [anomaly types]} of TFDV validating the examples against a pipeline schema, as
    ExampleValidator does."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.utils import io_utils
    from tfx_bsl.coders import example_coder

    serialized = []
    for features in canonical_examples:
        example = tf.train.Example()
        for name, kind, values in features:
            getattr(example.features.feature[name], kind).value.extend(values)
        serialized.append(example.SerializeToString())
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(serialized)
    schema = io_utils.SchemaReader().read(os.path.join(SCHEMAS, f"{schema_name}.pbtxt"))
    anomalies = tfdv.validate_statistics(stats_impl.generate_statistics_in_memory(batch), schema)
    return {name: sorted(anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason)
            for name, info in anomalies.anomaly_info.items()}


@pytest.fixture(scope="module")
def plain_and_bom_crlf_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    plain = run_files_pipeline(copy_tiny(root / "plain", bom_crlf=False), str(root / "ws-plain"),
                               "plain")
    bom_crlf = run_files_pipeline(copy_tiny(root / "bom-crlf", bom_crlf=True),
                                  str(root / "ws-bom-crlf"), "bom-crlf")
    return plain, bom_crlf


@pytest.mark.slow
def test_bom_and_crlf_files_give_the_same_examples(plain_and_bom_crlf_runs):
    plain, bom_crlf = plain_and_bom_crlf_runs
    assert bom_crlf["examples"] == plain["examples"]
    examples = plain["examples"]
    assert {node: sorted(splits) for node, splits in examples.items()} == {
        "texts_example_gen": ["corpus", "cvs"], "jobs_example_gen": ["eval", "test"],
        "judgments_example_gen": ["all"]}
    assert len(examples["texts_example_gen"]["cvs"]) == 49
    assert len(examples["texts_example_gen"]["corpus"]) == 200
    assert len(examples["judgments_example_gen"]["all"]) == 96
    jobs = examples["jobs_example_gen"]
    # A hash of job_id splits the 16 jobs: 6 in eval, 10 in test.
    assert (len(jobs["eval"]), len(jobs["test"])) == (6, 10)
    multiline = [e for e in examples["texts_example_gen"]["cvs"]
                 if ("cv_id", "bytes_list", (b"cv-multi",)) in e]
    assert multiline == [(("cv_id", "bytes_list", (b"cv-multi",)), ("text", "bytes_list", (
        b'Experience: Weld pipes, "TIG" and MIG.\nSkills: Read blueprints.',)))]


@pytest.mark.slow
def test_examples_have_the_declared_types_and_pass_the_schemas(plain_and_bom_crlf_runs):
    examples = plain_and_bom_crlf_runs[0]["examples"]
    kinds = {node: {(name, kind) for splits in examples[node].values() for e in splits
                    for name, kind, _ in e} for node in examples}
    assert kinds == {
        "texts_example_gen": {("cv_id", "bytes_list"), ("text", "bytes_list")},
        "jobs_example_gen": {("job_id", "bytes_list"), ("title", "bytes_list"),
                             ("text", "bytes_list"), ("major_group", "int64_list"),
                             ("minor_group", "bytes_list")},
        "judgments_example_gen": {("job_id", "bytes_list"), ("cv_id", "bytes_list"),
                                  ("relevance", "int64_list")},
    }
    for schema, node in (("texts", "texts_example_gen"), ("jobs", "jobs_example_gen"),
                         ("judgments", "judgments_example_gen")):
        for split, split_examples in examples[node].items():
            assert schema_anomalies(schema, split_examples) == {}, (node, split)


@pytest.mark.slow
def test_file_check_artifact(plain_and_bom_crlf_runs):
    plain, bom_crlf = plain_and_bom_crlf_runs
    for run, data in ((plain, "plain"), (bom_crlf, "bom-crlf")):
        artifact = run["dataset_files"]
        props = {k: (v.int_value if v.HasField("int_value") else v.string_value)
                 for k, v in artifact.custom_properties.items()}
        data_dir = props["input_base"]
        assert os.path.basename(data_dir) == data
        assert props["fingerprint"] == files.fingerprint(data_dir)
        counts = ("num_files", "num_bytes", "rows_cvs", "rows_jobs", "rows_judgments", "rows_corpus")
        assert sorted(props) == sorted(counts + ("input_base", "fingerprint", "warnings",
                                                 "tfx_version", "is_external"))
        assert props["warnings"] == "[]"  # checked, nothing found
        assert {k: props[k] for k in counts} == {
            "num_files": 4, "num_bytes": sum(s.bytes for s in files.check_dataset(data_dir)),
            "rows_cvs": 49, "rows_jobs": 16, "rows_judgments": 96, "rows_corpus": 200}
        with open(os.path.join(artifact.uri, "files.json")) as f:
            listed = json.load(f)
        assert listed == [s._asdict() for s in files.check_dataset(data_dir)]
        assert [(os.path.relpath(e["path"], data_dir), e["kind"], e["rows"]) for e in listed] == [
            ("cvs/cvs.csv", "cvs", 49), ("jobs/jobs.csv", "jobs", 16),
            ("judgments/judgments.csv", "judgments", 96), ("corpus/corpus.csv", "corpus", 200)]


@pytest.mark.slow
def test_bad_byte_fails_file_check_and_writes_no_examples(tmp_path):
    from metadata import mlmd
    from orchestration import runner

    data = copy_tiny(tmp_path / "data", bom_crlf=True)
    jobs = os.path.join(data, "jobs", "jobs.csv")
    with open(jobs, "rb") as f:
        lines = f.read().split(b"\r\n")
    lines[6] = lines[6][:3] + b"\xff" + lines[6][3:]  # line 7
    offset = len(b"\r\n".join(lines[:6])) + len(b"\r\n") + 3
    write(jobs, b"\r\n".join(lines))
    workdir = str(tmp_path / "ws")
    with pytest.raises(InputFileError) as raised:
        runner.run_pipeline(files_pipeline(data, workdir), run_id="bad-byte")
    assert raised.value.problems == [Problem(jobs, 7, f"not UTF-8 (byte 0xff at offset {offset})")]
    assert f"{jobs}, line 7: not UTF-8 (byte 0xff at offset {offset})" in str(raised.value)
    store = mlmd.sqlite_store(os.path.join(workdir, "metadata.sqlite"))
    assert mlmd.run_node_states(store, PIPELINE_NAME, "bad-byte") == {"FileCheck": "FAILED"}
    assert store.get_artifacts_by_type("Examples") == []
    assert store.get_artifacts_by_type("cvrank.DatasetFiles") == []


@pytest.mark.slow
def test_example_gen_alone_stops_at_a_bad_file(tmp_path):
    """Without FileCheck before it, DatasetExampleGen still fails with the file and line."""
    from orchestration import runner

    data = copy_tiny(tmp_path / "data", bom_crlf=False)
    judgments = write(os.path.join(data, "judgments", "judgments.csv"),
                      JUDGMENTS_HEADER + b"13-1071.00,cv-000001,2\n13-1071.00,cv-000027,high\n")
    with pytest.raises(InputFileError) as raised:
        runner.run_pipeline(files_pipeline(data, str(tmp_path / "ws")), run_id="no-check",
                            nodes=["judgments_example_gen"])
    assert f"{judgments}, line 3: field 'relevance' is 'high', not an integer" in str(raised.value)


@pytest.mark.slow
def test_header_only_file_beside_rows_is_recorded_and_the_run_goes_on(tmp_path):
    data = copy_tiny(tmp_path / "data", bom_crlf=False)
    extra = write(os.path.join(data, "cvs", "extra.csv"), b"cv_id,text\r\n")
    run = run_files_pipeline(data, str(tmp_path / "ws"), "header-only-extra")
    # Every node COMPLETE (run_files_pipeline checks it); the empty file adds no example.
    assert len(run["examples"]["texts_example_gen"]["cvs"]) == 49
    props = run["dataset_files"].custom_properties
    assert json.loads(props["warnings"].string_value) == [f"{extra}: header only, no rows; ignored"]
    assert (props["num_files"].int_value, props["rows_cvs"].int_value) == (5, 49)


@pytest.mark.slow
def test_header_only_jobs_stop_the_run_at_file_check(tmp_path):
    from metadata import mlmd
    from orchestration import runner

    data = copy_tiny(tmp_path / "data", bom_crlf=False)
    jobs = write(os.path.join(data, "jobs", "jobs.csv"), JOBS_HEADER)
    workdir = str(tmp_path / "ws")
    with pytest.raises(InputFileError) as raised:
        runner.run_pipeline(files_pipeline(data, workdir), run_id="header-only-jobs")
    assert raised.value.problems == [Problem(jobs, None, "header only, no rows")]
    assert f"  - {jobs}: header only, no rows" in str(raised.value)
    store = mlmd.sqlite_store(os.path.join(workdir, "metadata.sqlite"))
    assert mlmd.run_node_states(store, PIPELINE_NAME, "header-only-jobs") == {"FileCheck": "FAILED"}
    assert store.get_artifacts_by_type("cvrank.DatasetFiles") == []
