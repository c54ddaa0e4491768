#!/usr/bin/env python3
"""Writes a cvrank dataset `--factor` N times the size of a given one (default `data/onet`), for
measuring how the pipeline scales. Python standard library only.

Contract:
- Input: a dataset in the format of docs/architecture.md whose judgments are those data/build_dataset.py
  defines: every CV has exactly one job of relevance 2 (its occupation), every job_id is an O*NET-SOC
  code whose major and minor groups are the row's `major_group` and `minor_group`, and the judgments
  list exactly, for every CV, every job of its occupation's minor group (2 for the occupation's own
  jobs, 1 for the others). Anything else is refused with an error naming what differs.
- Output: the same format, one file per kind (`jobs/jobs.csv`, `cvs/cvs.csv`, `judgments/judgments.csv`,
  `corpus/corpus.csv` when the source has a corpus), plus `scale.json` (what was written from what) and
  `README.md` beside the folders, which the pipeline does not read. Every source row is kept; added:
  - jobs: N - 1 variants of every job (`<job_id>-v02`, ...): same title and groups, the description
    followed by `Duties:` and 2 to 4 seeded task items of the occupation (from its CVs).
  - CVs: (N - 1) times each occupation's CV count, drawn by data/build_dataset.py's `make_cvs` from the
    experience and skill items of the occupation's source CVs (so its rules hold: 3 to 8 items of each,
    20% career changers with 1 to 3 tasks of a neighbouring occupation, never the occupation's title,
    no two CVs alike, none equal to a source CV). Ids continue the source's numbering (`cv-002770`, ...).
  - judgments: recomputed by the same rule for every CV and job, so they grow about N^2 times (N times
    the CVs, each judged for N times the jobs of its minor group).
  - corpus: (N - 1) new texts per source text; new text k is based on source text k mod L: a seeded
    sequence of the clauses (split after `,;.:`) of that text and 1 or 2 other seeded texts, cut to
    about the base text's word count; none repeats another corpus text.
- The same source, factor and seed give byte-identical files; factor 1 writes the source's rows (each
  kind in one file, in the order build_dataset.py writes them).

    python data/scale_dataset.py --factor 4 --out .scratch/onet-4x
    python data/scale_dataset.py --factor 16 --out .scratch/onet-16x --seed 7 --source data/onet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass

# The dataset format and the CV rules are build_dataset's, the readers derive_dataset's (sibling
# scripts, not a package).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_dataset import (Occupation, check, clean, csv_bytes, make_cvs, rng_for,  # noqa: E402
                           sha256_bytes, soc_major, soc_minor, stable_key)
from derive_dataset import (COLUMNS, KINDS, REQUIRED_KINDS, STRICT_RELEVANCE, check_out,  # noqa: E402
                            clear_output, cv_items, kind_files, read_kind, relevance_of)

CAREER_CHANGE_RATE = 0.2  # as data/onet was built (build_dataset.py's default)
SPARE_CVS = 2             # drawn per occupation beyond the need, replacing any that repeat a source CV
JOB_DUTIES = (2, 4)       # task items added to a job variant's description (min, max)
CORPUS_TEXTS = (2, 3)     # source texts one new corpus text takes its clauses from (min, max)
CORPUS_ATTEMPTS = 20      # draws before a new corpus text that repeats another is an error
CLAUSE = re.compile(r"(?<=[,;.:])\s+")
CV_NUMBER = re.compile(r"cv-(\d+)")
MANIFEST = "scale.json"
GENERATOR_FILES = ("scale_dataset.py", "build_dataset.py", "derive_dataset.py")


@dataclass
class Source:
    """A source dataset as read: rows as dicts of strings, in file order."""
    jobs: list[dict]
    cvs: list[dict]
    corpus: list[str] | None       # None: the source has no corpus files
    occupation_of_cv: dict[str, str]  # cv_id -> job_id of its relevance-2 judgment


def fail(message: str):
    raise SystemExit(f"error: {message}")


# --------------------------------------------------------------------------------------------------
# Reading and checking the source


def read_source(source: str) -> Source:
    """Reads `source` and checks that its judgments follow the occupation rule (module docstring)."""
    for kind in REQUIRED_KINDS:
        if not kind_files(source, kind):
            fail(f"{source} is not a dataset: no {kind}/*.csv")
    jobs = read_kind(source, "jobs")
    cvs = read_kind(source, "cvs")
    corpus = [row["text"] for row in read_kind(source, "corpus")] if kind_files(source, "corpus") else None
    judgments = read_kind(source, "judgments")
    for rows, key in ((jobs, "job_id"), (cvs, "cv_id")):
        ids = [row[key] for row in rows]
        if len(set(ids)) != len(ids):
            fail(f"{source}: duplicate {key}s")
    for job in jobs:
        code = job["job_id"]
        if (soc_minor(code), soc_major(code)) != (job["minor_group"], job["major_group"]):
            fail(f"{source}: job {code}: major_group {job['major_group']} and minor_group "
                 f"{job['minor_group']} are not those of an O*NET-SOC code {code}")
    occupation_of_cv: dict[str, str] = {}
    for row in judgments:
        if relevance_of(row) == STRICT_RELEVANCE:
            if row["cv_id"] in occupation_of_cv:
                fail(f"{source}: CV {row['cv_id']} has more than one job of relevance 2")
            occupation_of_cv[row["cv_id"]] = row["job_id"]
    job_ids = {job["job_id"] for job in jobs}
    unknown = sorted(set(occupation_of_cv) - {cv["cv_id"] for cv in cvs}) + sorted(
        {job for job in occupation_of_cv.values() if job not in job_ids})
    if unknown:
        fail(f"{source}: judgments name ids that are not among the CVs or jobs (e.g. {unknown[0]})")
    unjudged = [cv["cv_id"] for cv in cvs if cv["cv_id"] not in occupation_of_cv]
    if unjudged:
        fail(f"{source}: {len(unjudged)} CVs have no job of relevance 2 (e.g. {unjudged[0]}); "
             f"a CV's occupation is its relevance-2 job")
    found = sorted((r["job_id"], r["cv_id"], relevance_of(r)) for r in judgments)
    expected = [row for chunk in judgment_chunks(jobs, occupation_of_cv, {}) for row in chunk]
    if found != expected:
        fail(f"{source}: the judgments are not exactly 2 for a CV's occupation and 1 for the other "
             f"jobs of its minor group ({len(found):,} rows, the rule gives {len(expected):,}); "
             f"a scaled dataset would not keep them")
    return Source(jobs, cvs, corpus, occupation_of_cv)


def occupations(src: Source) -> list[Occupation]:
    """One build_dataset Occupation per source job that has CVs: title, description and, as its
    tasks and activities, the distinct experience and skill items of its CVs (in CV id order; a
    career changer's borrowed tasks are among them, as the text does not mark them)."""
    items: dict[str, tuple[dict, dict]] = defaultdict(lambda: ({}, {}))
    for cv in sorted(src.cvs, key=lambda c: c["cv_id"]):
        experience, skills = cv_items(cv["text"])
        tasks, activities = items[src.occupation_of_cv[cv["cv_id"]]]
        tasks.update(dict.fromkeys(experience))
        activities.update(dict.fromkeys(skills))
    occs = []
    for job in sorted(src.jobs, key=lambda j: j["job_id"]):
        if job["job_id"] in items:
            tasks, activities = items[job["job_id"]]
            occs.append(Occupation(job["job_id"], job["title"], job["text"],
                                   [(t, t) for t in tasks], [(a, a) for a in activities]))
    return occs


# --------------------------------------------------------------------------------------------------
# Scaling each kind


def variant_id(job_id: str, variant: int, factor: int) -> str:
    return f"{job_id}-v{variant:0{max(2, len(str(factor)))}d}"


def scaled_jobs(src: Source, occs: list[Occupation], factor: int, seed: int) -> list[dict]:
    """Every source job and its factor - 1 variants, sorted by job_id; each has `occupation`."""
    tasks = {occ.code: [t for _, t in occ.tasks] for occ in occs}
    out = []
    for job in src.jobs:
        out.append({**job, "occupation": job["job_id"]})
        pool = tasks.get(job["job_id"], [])
        for variant in range(2, factor + 1):
            rng = rng_for(seed, "job", job["job_id"], str(variant))
            duties = rng.sample(pool, min(rng.randint(*JOB_DUTIES), len(pool)))
            text = job["text"] + (" Duties: " + "; ".join(duties) + "." if duties else "")
            out.append({**job, "job_id": variant_id(job["job_id"], variant, factor), "text": clean(text),
                        "occupation": job["job_id"]})
    out.sort(key=lambda j: j["job_id"])
    if len({j["job_id"] for j in out}) != len(out):
        fail("a job variant id is already a job id of the source")
    return out


def scaled_cvs(src: Source, occs: list[Occupation], factor: int, seed: int) -> list[dict]:
    """Source CVs and the new ones as build_dataset CV dicts (cv_id, text, occupation), by cv_id."""
    by_code = {occ.code: occ for occ in occs}
    need: dict[str, int] = defaultdict(int)
    for cv in src.cvs:
        need[src.occupation_of_cv[cv["cv_id"]]] += factor - 1
    out = [{"cv_id": cv["cv_id"], "text": cv["text"], "occupation": by_code[src.occupation_of_cv[cv["cv_id"]]]}
           for cv in src.cvs]
    if factor > 1:
        texts = {cv["text"] for cv in src.cvs}
        # A seed of its own, so new CVs do not follow the draws that built the source's CVs.
        drawn = make_cvs(occs, max(need.values()) + SPARE_CVS, CAREER_CHANGE_RATE,
                         int(stable_key(seed, "scale-cvs")[:15], 16))
        taken: dict[str, int] = defaultdict(int)
        new = []
        for cv in drawn:  # in make_cvs's seeded order
            code = cv["occupation"].code
            if taken[code] < need[code] and cv["text"] not in texts:
                texts.add(cv["text"])
                taken[code] += 1
                new.append(cv)
        short = [code for code in need if taken[code] < need[code]]
        if short:
            fail(f"could not draw {need[short[0]]} new CVs unlike the source's for {short[0]}")
        numbers = [int(m.group(1)) for cv in src.cvs if (m := CV_NUMBER.fullmatch(cv["cv_id"]))]
        first = max(numbers, default=0) + 1
        width = max(6, len(str(first + len(new))))
        for number, cv in enumerate(new, start=first):
            out.append({"cv_id": f"cv-{number:0{width}d}", "text": cv["text"], "occupation": cv["occupation"]})
    out.sort(key=lambda c: c["cv_id"])
    if len({cv["cv_id"] for cv in out}) != len(out):
        fail("a new CV id is already a CV id of the source")
    check(out)  # build_dataset's rules: no title, no O*NET-SOC code, no two CVs alike
    return out


def scaled_corpus(corpus: list[str], factor: int, seed: int) -> list[str]:
    """The source texts, then (factor - 1) * len(corpus) new ones (module docstring)."""
    out = list(corpus)
    seen = set(corpus)
    clauses = [CLAUSE.split(text) for text in corpus]
    for k in range((factor - 1) * len(corpus)):
        base = k % len(corpus)
        rng = rng_for(seed, "corpus", str(k))
        target = len(corpus[base].split())
        for _attempt in range(CORPUS_ATTEMPTS):
            others = [i for i in rng.sample(range(len(corpus)), min(len(corpus), CORPUS_TEXTS[1] + 1))
                      if i != base][:rng.randint(*CORPUS_TEXTS) - 1]
            pool = [c for i in [base, *others] for c in clauses[i]]
            rng.shuffle(pool)
            text = closest_prefix(pool, target)
            if text not in seen:
                break
        else:
            fail(f"could not make new corpus text {k + 1} unlike the others")
        seen.add(text)
        out.append(text)
    return out


def closest_prefix(clauses: list[str], words: int) -> str:
    """The clauses' shortest prefix (at least one clause) whose word count is closest to `words`."""
    best, best_gap, total = 1, None, 0
    for n, clause in enumerate(clauses, start=1):
        total += len(clause.split())
        gap = abs(total - words)
        if best_gap is None or gap < best_gap:
            best, best_gap = n, gap
        if total >= words:
            break
    return clean(" ".join(clauses[:best]))


def judgment_chunks(jobs: list[dict], occupation_of_cv: dict[str, str], occupation_of_job: dict[str, str]):
    """Yields, job by job in job_id order, the sorted (job_id, cv_id, relevance) rows of the rule:
    2 for the CVs of the job's occupation, 1 for the other CVs of its minor group. A job's occupation
    is `occupation_of_job[job_id]`, else the job itself."""
    minor_of = {job["job_id"]: job["minor_group"] for job in jobs}
    cvs_by_minor: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for cv_id, occupation in sorted(occupation_of_cv.items()):
        cvs_by_minor[minor_of[occupation]].append((cv_id, occupation))
    for job in sorted(jobs, key=lambda j: j["job_id"]):
        own = occupation_of_job.get(job["job_id"], job["job_id"])
        yield [(job["job_id"], cv_id, 2 if occupation == own else 1)
               for cv_id, occupation in cvs_by_minor[job["minor_group"]]]


# --------------------------------------------------------------------------------------------------
# Writing


def write_rows(path: str, kind: str, chunks) -> tuple[int, int]:
    """Writes a `kind` file from chunks of rows (each written through build_dataset.csv_bytes, so the
    format is the bundled one); returns (rows, bytes)."""
    header = list(COLUMNS[kind])
    rows = 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(csv_bytes(header, []))
        for chunk in chunks:
            if chunk:
                blob = csv_bytes(header, chunk)
                f.write(blob[blob.index(b"\n") + 1:])
                rows += len(chunk)
        return rows, f.tell()


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generator_digest() -> str:
    """sha256 of the scripts that define the output (this one and the two it imports)."""
    here = os.path.dirname(os.path.abspath(__file__))
    blobs = []
    for name in GENERATOR_FILES:
        with open(os.path.join(here, name), "rb") as f:
            blobs.append(f.read())
    return sha256_bytes(b"\0".join(blobs))


def source_files(source: str) -> dict[str, dict]:
    """{path relative to the source: {bytes, sha256}} of the source's dataset files."""
    return {os.path.relpath(path, source): {"bytes": os.path.getsize(path), "sha256": file_digest(path)}
            for kind in KINDS for path in kind_files(source, kind)}


def scale(source: str, out: str, factor: int, seed: int) -> dict:
    """Writes the dataset `factor` times `source` to `out` (replacing the dataset files, MANIFEST and
    README.md an earlier run wrote there) and returns the manifest it also writes to out/MANIFEST."""
    if factor < 1:
        fail("the factor must be at least 1")
    src = read_source(source)
    occs = occupations(src)
    jobs = scaled_jobs(src, occs, factor, seed)
    cvs = scaled_cvs(src, occs, factor, seed)
    corpus = scaled_corpus(src.corpus, factor, seed) if src.corpus else None

    clear_output(out)
    if os.path.exists(os.path.join(out, MANIFEST)):
        os.remove(os.path.join(out, MANIFEST))
    written = {}
    columns = COLUMNS["jobs"]
    written["jobs/jobs.csv"] = write_rows(os.path.join(out, "jobs", "jobs.csv"), "jobs",
                                          [[[job[c] for c in columns] for job in jobs]])
    written["cvs/cvs.csv"] = write_rows(os.path.join(out, "cvs", "cvs.csv"), "cvs",
                                        [[(cv["cv_id"], cv["text"]) for cv in cvs]])
    occupation_of_cv = {cv["cv_id"]: cv["occupation"].code for cv in cvs}
    written["judgments/judgments.csv"] = write_rows(
        os.path.join(out, "judgments", "judgments.csv"), "judgments",
        judgment_chunks(jobs, occupation_of_cv, {job["job_id"]: job["occupation"] for job in jobs}))
    if corpus is not None:
        written["corpus/corpus.csv"] = write_rows(os.path.join(out, "corpus", "corpus.csv"), "corpus",
                                                  [[(text,) for text in corpus]])
    manifest = {
        "command": f"python data/scale_dataset.py --source {source} --factor {factor} --seed {seed} --out {out}",
        "factor": factor,
        "seed": seed,
        "generator_sha256": generator_digest(),
        "source": {"path": os.path.abspath(source), "files": source_files(source)},
        "files": {rel: {"rows": rows, "bytes": size} for rel, (rows, size) in written.items()},
        "occupations": len(occs),
        "corpus_words": sum(len(t.split()) for t in corpus) if corpus is not None else 0,
    }
    with open(os.path.join(out, MANIFEST), "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    write_readme(out, manifest)
    return manifest


def write_readme(out: str, manifest: dict) -> None:
    lines = [
        f"# cvrank dataset, {manifest['factor']} times {manifest['source']['path']}",
        "",
        f"Written by `{manifest['command']}` (see data/README.md, \"Scaled datasets\"); `{MANIFEST}` records",
        "the source files, the generator and what was written.",
        "",
        "The texts are the source dataset's, recombined, so the source's licence and attribution apply;",
        "for the bundled datasets see data/README.md, \"Licences and attribution\".",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Write a cvrank dataset N times the size of a given one: more CVs, job variants, "
                    "judgments by the occupation rule and more corpus text, recombined from the "
                    "source's own text. Standard library only; deterministic for a given seed.",
        epilog="Example:\n  python data/scale_dataset.py --factor 4 --out .scratch/onet-4x",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factor", type=int, required=True, metavar="N", help="size factor, at least 1")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
    p.add_argument("--source", default=os.path.join("data", "onet"), metavar="DIR",
                   help="dataset to scale (default data/onet)")
    p.add_argument("--seed", type=int, default=42, help="seed of every random choice (default 42)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out (its dataset files are replaced)")
    args = p.parse_args(argv)
    if args.factor < 1:
        p.error("--factor must be at least 1")
    check_out(p, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    manifest = scale(args.source, args.out, args.factor, args.seed)
    print(f"wrote {args.out} ({args.factor} x {args.source}, seed {args.seed})")
    for rel, info in manifest["files"].items():
        print(f"  {rel}: {info['rows']:,} rows, {info['bytes']:,} bytes")
    print(f"  corpus words: {manifest['corpus_words']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
