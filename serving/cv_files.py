"""Reads and checks CV files (`cv_id,text` CSV, the dataset's `cvs/*.csv` format) for a CV index update.

Every problem is reported with the file, the line and the field, and all problems are collected before
anything is indexed: UTF-8 (a byte order mark is accepted), the header, the field count of each row,
empty ids or texts, fields over the size limit, and ids repeated within or across the files.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import os
from typing import List, Sequence

COLUMNS = ("cv_id", "text")
MAX_FIELD_CHARS = 1024 * 1024   # a CV of up to 1 MB of text
_MAX_PROBLEMS = 20


class CvFileError(ValueError):
    """The CV files have problems; the message lists them (file, line, field)."""


@dataclasses.dataclass
class Cv:
    cv_id: str
    text: str
    source: str   # "file:line"


def cv_file_paths(path: str) -> List[str]:
    """The CSV files of `path`: the file itself, or the `*.csv` files of a directory, sorted."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.csv")))
        if not files:
            raise CvFileError(f"{path}: no *.csv files in this directory")
        return files
    if not os.path.exists(path):
        raise CvFileError(f"{path}: no such file or directory")
    return [path]


def read_cv_files(paths: Sequence[str]) -> List[Cv]:
    """The CVs of the given CSV files, in file order. Raises CvFileError listing every problem found."""
    csv.field_size_limit(MAX_FIELD_CHARS + 1)
    cvs: List[Cv] = []
    problems: List[str] = []
    first_seen = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as err:
            problems.append(f"{path}: cannot read: {err.strerror}")
            continue
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw[:err.start].count(b"\n") + 1
            problems.append(f"{path}, line {line}: not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})")
            continue
        if not text.strip():
            problems.append(f"{path}: the file is empty (expected a header line `cv_id,text` and one CV per line)")
            continue
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
            if tuple(h.strip() for h in header) != COLUMNS:
                problems.append(f"{path}, line 1: the header is {','.join(header)!r}; expected 'cv_id,text'")
                continue
            rows = 0
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                rows += 1
                where = f"{path}, line {line}"
                if len(row) != 2:
                    problems.append(f"{where}: {len(row)} fields; expected 2 (cv_id, text): quote a text "
                                    "that contains commas")
                    continue
                cv_id, body = row[0].strip(), row[1].strip()
                if not cv_id:
                    problems.append(f"{where}: field 'cv_id' is empty")
                elif not body:
                    problems.append(f"{where}: field 'text' is empty (cv_id {cv_id})")
                elif len(body) > MAX_FIELD_CHARS:
                    problems.append(f"{where}: field 'text' has {len(body)} characters; the limit is {MAX_FIELD_CHARS}")
                elif cv_id in first_seen:
                    problems.append(f"{where}: cv_id {cv_id} is repeated (first at {first_seen[cv_id]})")
                else:
                    first_seen[cv_id] = where
                    cvs.append(Cv(cv_id, body, f"{path}:{line}"))
            if rows == 0:
                problems.append(f"{path}: the file has a header and no CV")
        except csv.Error as err:
            if "field larger than field limit" in str(err):
                problems.append(f"{path}, line {reader.line_num}: a field is longer than {MAX_FIELD_CHARS} characters")
            else:
                problems.append(f"{path}, line {reader.line_num}: not valid CSV: {err}")
    if problems:
        more = f"\n  ... and {len(problems) - _MAX_PROBLEMS} more" if len(problems) > _MAX_PROBLEMS else ""
        raise CvFileError("the CV files have problems; nothing was indexed:\n  - "
                          + "\n  - ".join(problems[:_MAX_PROBLEMS]) + more)
    return cvs
