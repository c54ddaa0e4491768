"""Reads and checks CV files (`cv_id,text` CSV, the dataset's `cvs/*.csv` format) for a CV index update.

The files are read with the dataset's reader (dataset.files), so `cvrank index` accepts exactly the CV
files the pipeline accepts and reports the same file problems (encoding, header, field count, field
size, empty or header-only files). On top of them it checks what the index needs and the pipeline
leaves to DataCheck: no empty id or text, and no id repeated within or across the files. Every problem
is reported with the file and the line, and all problems (up to `dataset.files.MAX_PROBLEMS`) are
collected before anything is indexed.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from typing import Dict, List, Optional, Sequence

from dataset import files
from dataset.files import MAX_FIELD_CHARS, InputFileError, Problem

log = logging.getLogger("cvrank.serving")

__all__ = ["COLUMNS", "MAX_FIELD_CHARS", "Cv", "CvFileError", "cv_file_paths", "read_cv_files"]

COLUMNS = files.columns("cvs")
_MAX_PROBLEMS = files.MAX_PROBLEMS


class CvFileError(InputFileError):
    """The CV files have problems; the message lists them (file, line, field)."""

    heading = "the CV files have problems; nothing was indexed"


@dataclasses.dataclass
class Cv:
    cv_id: str
    text: str
    source: str   # "file:line"


def cv_file_paths(path: str) -> List[str]:
    """The CSV files of `path`: the file itself, or the `*.csv` files of a directory, sorted."""
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, files.FILE_PATTERN)))
        if not found:
            raise CvFileError(f"{path}: no {files.FILE_PATTERN} files in this directory")
        return found
    if not os.path.exists(path):
        raise CvFileError(f"{path}: no such file or directory")
    return [path]


def read_cv_files(paths: Sequence[str]) -> List[Cv]:
    """The CVs of the given CSV files, in file order, ids and texts stripped of surrounding spaces.
    Raises CvFileError listing every problem found."""
    cvs: List[Cv] = []
    problems: List[Problem] = []
    first_seen: Dict[str, str] = {}
    rows_by_path: Dict[str, Optional[int]] = {}  # None: the file has problems of its own
    for path in paths:
        if len(problems) >= _MAX_PROBLEMS:
            break
        found_before, rows_by_path[path] = len(problems), 0
        for line, row in files.read_rows(path, "cvs", problems, _MAX_PROBLEMS):
            rows_by_path[path] += 1
            cv_id, body = (row["cv_id"] or "").strip(), (row["text"] or "").strip()
            if not cv_id:
                problems.append(Problem(path, line, "field 'cv_id' is empty"))
            elif not body:
                problems.append(Problem(path, line, f"field 'text' is empty (cv_id {cv_id})"))
            elif cv_id in first_seen:
                problems.append(Problem(path, line, f"cv_id {cv_id} is repeated (first at {first_seen[cv_id]})"))
            else:
                first_seen[cv_id] = f"{path}, line {line}"
                cvs.append(Cv(cv_id, body, f"{path}:{line}"))
            if len(problems) >= _MAX_PROBLEMS:
                break
        if len(problems) > found_before:
            rows_by_path[path] = None
    header_only, ignored = files.files_without_rows(rows_by_path)
    problems += header_only
    for warning in ignored:
        log.warning("%s", warning)
    if problems:
        raise CvFileError(problems[:_MAX_PROBLEMS], truncated=len(problems) >= _MAX_PROBLEMS)
    return cvs
