"""The dataset's file contract and its one reader.

A dataset is a directory with one sub-directory of `*.csv` files per file kind (`COLUMNS`):

    cvs/*.csv        cv_id,text                                   required
    jobs/*.csv       job_id,title,text,major_group,minor_group    required; major_group an integer
    judgments/*.csv  job_id,cv_id,relevance                       required; relevance an integer
    corpus/*.csv     text                                         optional

The CSV dialect is what spreadsheets write (RFC 4180):
- UTF-8, with or without a byte order mark;
- line ends LF, CRLF or CR, all read as LF (inside quoted fields too, so a file reads the same
  whichever line ends it was saved with);
- line 1 is the header, with exactly the kind's columns in any order;
- fields are separated by commas; a field holding a comma, a quote or a line break is quoted with
  `"` (a `"` inside it doubled) and may then span lines;
- every row has as many fields as the header; empty lines are skipped (a line of spaces is a row);
- a field holds at most `MAX_FIELD_CHARS` characters;
- an integer column holds a decimal integer (optional sign, int64 range) or nothing.

An empty cell is not a file problem: it is read as None (downstream a feature without values), and
DataCheck reports empty ids and texts with their rows, as it reports duplicate ids and judgments
that refer to unknown jobs or CVs. Everything else above is: `read_rows`, `check_file` and
`check_dataset` report it as a `Problem` (path, line, message) in an `InputFileError`.

A file with a header and no rows (blank lines aside) is well-formed: it reads as no rows. Whether
it is acceptable depends on the other files of its kind (`files_without_rows`): when none of them
has rows either, the kind has no data and each such file is a problem
(`<path>: header only, no rows`); otherwise it adds nothing and is a warning
(`<path>: header only, no rows; ignored`) that `check_dataset` hands back without failing.

Standard library only: serving reads CV files with this module without TFX.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
from typing import Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

# A CV of up to 1 MiB of text; a longer field is far more likely a quoting mistake than a document.
MAX_FIELD_CHARS = 1 << 20
# Problems gathered before checking stops: enough to show every broken file of a dataset at once,
# few enough to read.
MAX_PROBLEMS = 20
# What a file with a header and no rows is called, as a problem and as a warning.
HEADER_ONLY = "header only, no rows"

# The file kinds, their columns in canonical order and the columns' types (str or int).
COLUMNS: Dict[str, Dict[str, type]] = {
    "cvs": {"cv_id": str, "text": str},
    "jobs": {"job_id": str, "title": str, "text": str, "major_group": int, "minor_group": str},
    "judgments": {"job_id": str, "cv_id": str, "relevance": int},
    "corpus": {"text": str},
}
REQUIRED_KINDS = ("cvs", "jobs", "judgments")
OPTIONAL_KINDS = ("corpus",)
KINDS = REQUIRED_KINDS + OPTIONAL_KINDS
FILE_PATTERN = "*.csv"

# A row as read: {column: value} in COLUMNS order; str or int by the column's type, None when empty.
Row = Dict[str, Union[str, int, None]]

# The csv module's field limit while reading: fields up to this size are read whole so that their
# size can be reported; it bounds the memory a runaway quoted field can take.
_PARSER_FIELD_LIMIT = 16 * MAX_FIELD_CHARS
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_BARE_CR = re.compile(rb"(?<=\r)(?!\n)")  # splits after a CR that does not start a CRLF
_PREVIEW_CHARS = 40


class Problem(NamedTuple):
    """One file problem: `line` is the 1-based line where the offending record starts, or None when
    the problem is not at a line (a missing directory, an unreadable file)."""

    path: str
    line: Optional[int]
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}, line {self.line}"
        return f"{where}: {self.message}"


class InputFileError(ValueError):
    """Dataset files break the contract of this module. `problems` lists them (`Problem`s);
    `truncated` says checking stopped at the cap (there may be more). The message lists them all,
    one per line.

    Also constructible from a message string alone (then `problems` is empty): that is how Beam
    re-raises an exception with its step name appended.
    """

    heading = "the input files have problems"

    def __init__(self, problems: Union[Sequence[Problem], str], truncated: bool = False):
        self.truncated = truncated
        if isinstance(problems, str):
            self.problems: List[Problem] = []
            super().__init__(problems)
            return
        self.problems = list(problems)
        count = f"{len(self.problems)} problem{'' if len(self.problems) == 1 else 's'}"
        if truncated:
            count += "; checking stopped there, there may be more"
        super().__init__(f"{self.heading} ({count}):\n  - "
                         + "\n  - ".join(str(p) for p in self.problems))

    def __reduce__(self):
        # Pickled (Beam, multiprocessing) with its problems, not only its message.
        return type(self), ((self.problems or str(self)), self.truncated)


class FileSummary(NamedTuple):
    """A file that passed `check_file`: its data rows (header and blank lines not counted), size in
    bytes and SHA-256 of its bytes."""

    path: str
    kind: str
    rows: int
    bytes: int
    sha256: str


def columns(kind: str) -> Tuple[str, ...]:
    """The columns of file kind `kind`, in canonical order. Raises ValueError for an unknown kind."""
    if kind not in COLUMNS:
        raise ValueError(f"unknown file kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return tuple(COLUMNS[kind])


def read_rows(path: str, kind: str, problems: Optional[List[Problem]] = None,
              max_problems: int = MAX_PROBLEMS) -> Iterator[Tuple[int, Row]]:
    """Reads a `kind` file record by record, streaming (one record in memory at a time).

    Yields (line, row): `line` is the 1-based line where the record starts (a quoted field may span
    lines), `row` maps each of the kind's columns, in `COLUMNS` order, to its value: str for a str
    column, int for an int column, None for an empty cell (an int cell of only spaces is empty too;
    a str cell of spaces is kept as it is).

    With `problems` None, raises InputFileError at the first problem. With a list, appends problems
    to it instead and skips the rows that have one, going on until the file ends, a problem makes
    the rest unreadable (encoding, header, CSV syntax), or the list holds `max_problems`.

    A file with a header and no rows yields nothing and is no problem here; `files_without_rows`
    judges such files against the other files of their kind.
    """
    yield from _read(path, kind, problems, max_problems, None)


def check_file(path: str, kind: str, max_problems: int = MAX_PROBLEMS) -> FileSummary:
    """Reads the whole file; returns its summary, or raises InputFileError with its problems (up to
    `max_problems`). A header-only file passes with `rows` 0 (see `files_without_rows`)."""
    problems: List[Problem] = []
    summary = _check(path, kind, problems, max_problems)
    if summary is None:
        raise InputFileError(problems, truncated=len(problems) >= max_problems)
    return summary


def dataset_files(data_dir: str) -> Dict[str, List[str]]:
    """{kind: sorted paths of `<data_dir>/<kind>/*.csv`} for every kind of `KINDS`, in that order
    (an empty list when the kind has no files)."""
    return {kind: sorted(glob.glob(os.path.join(data_dir, kind, FILE_PATTERN))) for kind in KINDS}


def files_without_rows(rows_by_path: Mapping[str, Optional[int]]
                       ) -> Tuple[List[Problem], List[Problem]]:
    """Judges the header-only files among the files of one kind: (problems, warnings).

    `rows_by_path` maps each file of the kind to its number of data rows, or to None when that is
    unknown (the file has problems of its own, or was not read). When every file is known to have
    no rows, the kind has no data: each file is a problem, `<path>: header only, no rows`. Otherwise
    each file with no rows is a warning, `<path>: header only, no rows; ignored`: reading it yields
    nothing, so the other files stand for the kind. Both lists follow the mapping's order.
    """
    empty = [path for path, rows in rows_by_path.items() if rows == 0]
    if empty and len(empty) == len(rows_by_path):
        return [Problem(path, None, HEADER_ONLY) for path in empty], []
    return [], [Problem(path, None, f"{HEADER_ONLY}; ignored") for path in empty]


def check_dataset(data_dir: str, max_problems: int = MAX_PROBLEMS,
                  warnings: Optional[List[Problem]] = None) -> List[FileSummary]:
    """Checks every file of the dataset at `data_dir` and that each required kind has files.

    Returns the files' summaries (in `dataset_files` order), or raises InputFileError with every
    problem found, across files; checking stops once `max_problems` are found. A kind whose files
    are all header-only is a problem; a header-only file beside files of its kind with rows is
    not, and is appended to `warnings` when a list is given (see `files_without_rows`).
    """
    if not os.path.isdir(data_dir):
        what = "not a directory" if os.path.exists(data_dir) else "no such directory"
        raise InputFileError([Problem(data_dir, None, f"{what}; a dataset is a directory with "
                                      + ", ".join(f"{k}/{FILE_PATTERN}" for k in KINDS))])
    files = dataset_files(data_dir)
    problems: List[Problem] = []
    for kind in REQUIRED_KINDS:
        if not files[kind]:
            directory = os.path.join(data_dir, kind)
            what = (f"no {FILE_PATTERN} files in this directory" if os.path.isdir(directory)
                    else "no such directory")
            problems.append(Problem(directory, None, f"{what}; a dataset needs {kind} files "
                                    f"({','.join(COLUMNS[kind])}) in {kind}/{FILE_PATTERN}"))
    summaries = []
    found: List[Problem] = []
    for kind, paths in files.items():
        rows_by_path: Dict[str, Optional[int]] = {}
        for path in paths:
            rows_by_path[path] = None
            if len(problems) >= max_problems:
                continue
            summary = _check(path, kind, problems, max_problems)
            if summary is not None:
                summaries.append(summary)
                rows_by_path[path] = summary.rows
        no_rows, ignored = files_without_rows(rows_by_path)
        problems += no_rows
        found += ignored
    if problems:
        raise InputFileError(problems[:max_problems], truncated=len(problems) >= max_problems)
    if warnings is not None:
        warnings += found
    return summaries


def fingerprint(data_dir: str) -> str:
    """A hex digest of (path relative to `data_dir`, size, mtime in ns) of every dataset file: it
    changes when a file is added, removed, renamed or written (TFX's ExampleGen driver fingerprints
    its input files the same way). Never raises: a missing directory has the digest of no files."""
    digest = hashlib.sha256()
    for paths in dataset_files(data_dir).values():
        for path in paths:
            try:
                stat = os.stat(path)
            except OSError:  # removed since the glob: the next fingerprint will differ anyway
                continue
            digest.update(f"{os.path.relpath(path, data_dir)}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# ---- the reader ----------------------------------------------------------------------------------

class _NotUtf8(Exception):
    def __init__(self, line: int, offset: int, byte: int):
        super().__init__(line, offset, byte)
        self.line, self.offset, self.byte = line, offset, byte


class _Lines:
    """The decoded lines of a binary file, for csv.reader: each ends in LF (or nothing at the end of
    the file). Counts and optionally hashes the bytes read; raises _NotUtf8 at the first byte that is
    not UTF-8. Lines are split as bytes (LF, CRLF, bare CR) before decoding, which is safe because
    bytes of multi-byte UTF-8 characters are never CR or LF; so the line and byte offset of a bad
    byte are exact."""

    def __init__(self, raw: Iterable[bytes], hasher=None):
        self._raw = raw
        self._hasher = hasher
        self.bytes = 0
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        for chunk in self._raw:  # binary file iteration splits after each LF
            if self._hasher is not None:
                self._hasher.update(chunk)
            pieces = _BARE_CR.split(chunk) if b"\r" in chunk else (chunk,)
            for piece in pieces:
                if not piece:
                    continue
                self.lines += 1
                skip = len(_UTF8_BOM) if self.bytes == 0 and piece.startswith(_UTF8_BOM) else 0
                try:
                    text = piece[skip:].decode("utf-8") if skip else piece.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise _NotUtf8(self.lines, self.bytes + skip + err.start,
                                   piece[skip + err.start]) from None
                self.bytes += len(piece)
                if text.endswith("\r\n"):
                    text = text[:-2] + "\n"
                elif text.endswith("\r"):
                    text = text[:-1] + "\n"
                yield text


def _preview(value: str, limit: int = _PREVIEW_CHARS) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _names(values: Sequence[str]) -> str:
    return ", ".join(_preview(v) for v in values)


def _header_problem(fields: List[str], kind: str) -> Optional[str]:
    """What is wrong with header `fields` for `kind`, or None: the names (spaces around them
    ignored) must be exactly the kind's columns, each once, in any order."""
    names = [f.strip() for f in fields]
    expected = COLUMNS[kind]
    missing = [c for c in expected if c not in names]
    unique = list(dict.fromkeys(names))
    unexpected = [n for n in unique if n not in expected]
    repeated = [n for n in unique if n in expected and names.count(n) > 1]
    parts = []
    for what, found in (("missing", missing), ("unexpected", unexpected), ("repeated", repeated)):
        if found:
            parts.append(f"{what} column{'s' if len(found) > 1 else ''} {_names(found)}")
    if not parts:
        return None
    return (f"{'; '.join(parts)} (the header is {_preview(','.join(fields), 100)}; {kind} files have "
            f"{','.join(expected)})")


def _empty_file_problem(kind: str, size: int) -> str:
    what = "0 bytes" if size == 0 else "only whitespace"
    return (f"the file is empty ({what}); {kind} files have the header line "
            f"'{','.join(COLUMNS[kind])}' and one row per line")


def _is_blank(fields: List[str]) -> bool:
    """A blank line: no field, or one field of only whitespace."""
    return len(fields) <= 1 and not "".join(fields).strip()


def _parse_int(name: str, value: str) -> Tuple[Optional[int], Optional[str]]:
    """(the int or None when empty, None) or (None, the problem)."""
    text = value.strip()
    if not text:
        return None, None
    if not _INTEGER.fullmatch(text):
        return None, f"field '{name}' is {_preview(value)}, not an integer"
    number = int(text)
    if not _INT64_MIN <= number <= _INT64_MAX:
        return None, f"field '{name}' is {_preview(text)}, beyond the 64-bit integer range"
    return number, None


def _read(path: str, kind: str, problems: Optional[List[Problem]], max_problems: int,
          hasher) -> Iterator[Tuple[int, Row]]:
    """read_rows, optionally hashing the bytes read."""
    columns(kind)  # raises for an unknown kind
    types = COLUMNS[kind]

    def report(line: Optional[int], message: str) -> bool:
        """Records a problem (raises when not collecting); True when reading must stop."""
        problem = Problem(path, line, message)
        if problems is None:
            raise InputFileError([problem])
        problems.append(problem)
        return len(problems) >= max_problems

    try:
        f = open(path, "rb")
    except OSError as err:
        report(None, f"cannot read: {err.strerror or err}")
        return
    if csv.field_size_limit() < _PARSER_FIELD_LIMIT:
        # Process-wide, so only ever raised; the default (131,072) is below MAX_FIELD_CHARS.
        csv.field_size_limit(_PARSER_FIELD_LIMIT)
    with f:
        lines = _Lines(f, hasher)
        reader = csv.reader(lines, strict=True)
        header: Optional[List[str]] = None
        end = 0  # the last line of the previous record
        try:
            for fields in reader:
                start, end = end + 1, reader.line_num
                if header is None:  # line 1
                    if _is_blank(fields):
                        if all(_is_blank(rest) for rest in reader):
                            report(1, _empty_file_problem(kind, lines.bytes))
                        else:
                            report(1, f"the first line is blank; it must be the header "
                                      f"'{','.join(types)}'")
                        return
                    problem = _header_problem(fields, kind)
                    if problem is not None:
                        report(1, problem)
                        return
                    header = [name.strip() for name in fields]
                    continue
                if not fields:  # a blank line
                    continue
                if len(fields) != len(header):
                    message = (f"{len(fields)} field{'' if len(fields) == 1 else 's'}; expected "
                               f"{len(header)} ({','.join(header)})")
                    if len(fields) > len(header):
                        message += ": quote a field that contains commas"
                    if report(start, message):
                        return
                    continue
                row: Row = {}
                bad = False
                for name, value in zip(header, fields):
                    if len(value) > MAX_FIELD_CHARS:
                        bad = True
                        if report(start, f"field '{name}' has {len(value):,} characters; the limit "
                                         f"is {MAX_FIELD_CHARS:,}"):
                            return
                    elif types[name] is int:
                        number, message = _parse_int(name, value)
                        if message is not None:
                            bad = True
                            if report(start, message):
                                return
                        row[name] = number
                    else:
                        row[name] = value if value else None
                if not bad:
                    yield start, {name: row[name] for name in types}
        except _NotUtf8 as err:
            hint = ("; the file starts with a UTF-16 byte order mark: save it as UTF-8"
                    if err.offset < 2 and err.line == 1 and _starts_utf16(path) else "")
            report(err.line, f"not UTF-8 (byte 0x{err.byte:02x} at offset {err.offset}){hint}")
            return
        except csv.Error as err:
            text = str(err)
            if text.startswith("field larger than field limit"):
                report(end + 1, f"a field has more than {_PARSER_FIELD_LIMIT:,} characters; the "
                                f"limit is {MAX_FIELD_CHARS:,} (is a closing quote missing?)")
            elif text == "unexpected end of data":
                report(end + 1, "a quoted field starting on this line is not closed: the file ends "
                                "inside it (a '\"' is missing)")
            else:
                report(reader.line_num, f"not valid CSV: {text} (inside a quoted field, write a "
                                        "'\"' as '\"\"')")
            return
    if header is None:
        report(1, _empty_file_problem(kind, lines.bytes))


def _starts_utf16(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) in _UTF16_BOMS


def _check(path: str, kind: str, problems: List[Problem], max_problems: int
           ) -> Optional[FileSummary]:
    """Reads `path` collecting its problems into `problems`; its summary when it had none."""
    before = len(problems)
    digest = _Digest()
    rows = sum(1 for _ in _read(path, kind, problems, max_problems, digest))
    if len(problems) > before:
        return None
    return FileSummary(path, kind, rows, digest.size, digest.sha256.hexdigest())


class _Digest:
    """SHA-256 and size of the bytes read (so the summary describes exactly what was checked)."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
