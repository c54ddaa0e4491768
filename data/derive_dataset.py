#!/usr/bin/env python3
"""Derives a cvrank dataset from an existing one: strict judgments and/or long distractor CVs.

Python standard library only. Reads a dataset directory in the format of docs/architecture.md
(default `data/onet`) and writes a new one to `--out`; the same source, options and seed give
byte-identical output.

    --strict          keep only the judgments of relevance 2 (the CV's occupation is the job's):
                      only the job's own occupation counts as relevant.
    --distractors N   add N long CVs (several hundred words each) that no judgment names. Each one
                      recombines the experience and skill items of the CVs of 2 to 4 seeded
                      occupations (a CV's occupation is the job of its relevance-2 judgment) as
                      first-person prose, mixed with boilerplate paragraphs (objective, hobbies,
                      availability, references) that say nothing about any occupation. They go
                      to `cvs/distractor_cvs.csv` with ids `cv-d00001`, `cv-d00002`, ...; the
                      occupations each one was built from go to `distractors.csv` (`cv_id`,
                      `job_ids` space-separated) beside the dataset's folders, where the pipeline
                      does not read it.

Every other file is copied byte for byte (jobs, the source's CV files, the corpus). The written
files are checked against the dataset's file contract (dataset/files.py, what FileCheck runs) and
the CV rules of data/build_dataset.py (no O*NET-SOC code in a CV, no two CVs alike).

    python data/derive_dataset.py --strict --out .scratch/onet-strict
    python data/derive_dataset.py --distractors 300 --out .scratch/onet-distractors
    python data/derive_dataset.py --strict --distractors 300 --seed 7 --out .scratch/onet-both
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import os
import random
import re
import shutil
import sys
from collections import defaultdict

# The dataset format is written one way, by build_dataset (a sibling script, not a package).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_dataset import csv_bytes  # noqa: E402

KINDS = ("cvs", "jobs", "judgments", "corpus")
REQUIRED_KINDS = ("cvs", "jobs", "judgments")
COLUMNS = {
    "cvs": ("cv_id", "text"),
    "jobs": ("job_id", "title", "text", "major_group", "minor_group"),
    "judgments": ("job_id", "cv_id", "relevance"),
    "corpus": ("text",),
}
STRICT_RELEVANCE = 2

# Written beside the dataset's folders (the pipeline reads only <kind>/*.csv).
DISTRACTORS_FILE = "distractors.csv"
DISTRACTOR_CVS_FILE = os.path.join("cvs", "distractor_cvs.csv")
DISTRACTOR_ID = "cv-d{:05d}"
DISTRACTOR_OCCUPATIONS = (2, 4)  # occupations whose CV items one distractor takes (min, max)
# Words of CV items in one distractor (min, max), shared equally by its occupations; the prose
# around the items and the boilerplate paragraphs add about as many again.
DISTRACTOR_ITEM_WORDS = (250, 450)
ITEMS_PER_SENTENCE = (2, 4)
SOC_CODE = re.compile(r"\d{2}-\d{4}(\.\d{2})?")
# The layout data/build_dataset.py gives a CV; other texts are split into clauses instead.
CV_LAYOUT = re.compile(r"Experience: (?P<experience>.*?)\.? Skills: (?P<skills>.*?)\.?")

# Prose frames for an item, an imperative verb phrase of O*NET ("Prepare budgets ...").
FIRST_ROLE = "In my previous role I had to {}"
EARLIER_ROLES = ("Before that, my job was to {}", "In an earlier position I would {}",
                 "Earlier in my career I used to {}", "In another job I had to {}")
NEXT_SENTENCE = ("In that job I also had to {}", "There I would also {}", "Most weeks I would {}",
                 "A large part of the work was to {}")
CONTINUATION = ("I also had to {}", "I would also {}", "I was often asked to {}", "I also helped to {}",
                "part of my work was to {}")
SKILLS_LEAD = ("Along the way I learned to {}", "I know how to {}", "I am able to {}", "I am trained to {}")
SKILLS_CONTINUATION = ("I can also {}", "I am also able to {}", "I have learned to {}")

# Boilerplate that says nothing about an occupation: a CV's objective statement, hobbies,
# availability and references paragraphs.
OBJECTIVE = (
    "I am a motivated and reliable professional looking for a new challenge.",
    "I am seeking a position where I can grow and contribute to a friendly team.",
    "My goal is to join an organisation that values hard work, honesty and good communication.",
    "I enjoy learning new things quickly and I take pride in doing a job well.",
    "I work well on my own and as part of a team, and I am comfortable with change.",
    "I am punctual, organised and always willing to go the extra mile.",
    "I would like to find a stable role with opportunities for further training.",
    "Colleagues describe me as calm under pressure, flexible and easy to work with.",
)
HOBBIES = (
    "In my free time I enjoy hiking, cycling and spending time outdoors with my family.",
    "I like cooking for friends and trying recipes from different countries.",
    "I play the guitar and sing in a local choir.",
    "I read a lot, mostly novels and history books.",
    "On weekends I volunteer at a community garden and help at the local food bank.",
    "I am a keen photographer and enjoy travelling to new places.",
    "I play football in an amateur league and go swimming twice a week.",
    "I enjoy board games, crosswords and chess.",
)
AVAILABILITY = (
    "I am available to start immediately and can work full time or part time.",
    "I hold a full driving licence and I am happy to travel when needed.",
    "I am open to shift work, weekend work and overtime.",
    "I can relocate for the right opportunity.",
    "My notice period is one month.",
    "I am happy to attend an interview at any time that suits you.",
)
REFERENCES = (
    "References are available on request.",
    "I can provide references from previous employers if required.",
    "Thank you for taking the time to read my application.",
    "I look forward to hearing from you.",
)


# --------------------------------------------------------------------------------------------------
# Reading and writing


def rng_for(seed: int, *parts: str) -> random.Random:
    """A random.Random seeded from `seed` and `parts` (a str seed: the same on every platform)."""
    return random.Random(hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).hexdigest())


def kind_files(data_dir: str, kind: str) -> list[str]:
    """The sorted `<data_dir>/<kind>/*.csv` files."""
    return sorted(glob.glob(os.path.join(data_dir, kind, "*.csv")))


def read_csv(path: str) -> tuple[list[str], list[dict]]:
    """(header, rows as dicts) of a dataset CSV file (UTF-8, optional byte order mark)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if any((v or "").strip() for v in row.values())]
        return list(reader.fieldnames or []), rows


def read_kind(data_dir: str, kind: str) -> list[dict]:
    """Every row of every `<kind>/*.csv` file of the dataset, in file order."""
    rows = []
    for path in kind_files(data_dir, kind):
        rows.extend(read_csv(path)[1])
    return rows


# --------------------------------------------------------------------------------------------------
# Strict judgments


def relevance_of(row: dict) -> int | None:
    """The judgment row's relevance as an int, None when it is not an integer."""
    try:
        return int((row.get("relevance") or "").strip())
    except ValueError:
        return None


def strict_judgment_files(source: str) -> tuple[dict[str, bytes], dict]:
    """{path relative to the dataset: bytes} of the source's judgment files keeping only the rows of
    relevance 2 (files left without rows are not written), and {relevance: rows dropped}."""
    out: dict[str, bytes] = {}
    dropped: dict = defaultdict(int)
    for path in kind_files(source, "judgments"):
        header, rows = read_csv(path)
        kept = []
        for row in rows:
            relevance = relevance_of(row)
            if relevance == STRICT_RELEVANCE:
                kept.append([row[c] for c in header])
            else:
                dropped[relevance] += 1
        if kept:
            out[os.path.join("judgments", os.path.basename(path))] = csv_bytes(header, kept)
    if not out:
        raise SystemExit(f"error: {source} has no judgment of relevance {STRICT_RELEVANCE}")
    return out, dict(dropped)


# --------------------------------------------------------------------------------------------------
# Distractor CVs


def occupations_of_cvs(judgments: list[dict]) -> dict[str, list[str]]:
    """{job_id: sorted cv_ids judged relevance 2 for it}: the CVs of each occupation."""
    by_job: dict[str, set] = defaultdict(set)
    for row in judgments:
        if relevance_of(row) == STRICT_RELEVANCE:
            by_job[row["job_id"].strip()].add(row["cv_id"].strip())
    return {job: sorted(cvs) for job, cvs in sorted(by_job.items())}


def cv_items(text: str) -> tuple[list[str], list[str]]:
    """(experience items, skill items) of a CV text. A text laid out as
    `Experience: a; b. Skills: c; d.` gives ([a, b], [c, d]); any other text gives its clauses
    (split at `.` and `;`) as experience items and no skills."""
    text = " ".join(text.split())
    match = CV_LAYOUT.fullmatch(text)
    if match:
        return _split(match["experience"], ";"), _split(match["skills"], ";")
    return _split(text, ";."), []


def _split(text: str, separators: str) -> list[str]:
    parts = re.split("[" + re.escape(separators) + "]", text)
    return [p.strip(" .;") for p in parts if p.strip(" .;")]


def as_clause(item_text: str) -> str:
    """An item as the continuation of a sentence: its first letter lowercased unless the first
    word is an acronym (`Prepare budgets` -> `prepare budgets`, `CAD drawings` stays)."""
    first = item_text.split(" ", 1)[0]
    if len(first) > 1 and first[1].isupper():
        return item_text
    return item_text[:1].lower() + item_text[1:]


def role_paragraph(rng: random.Random, experience: list[str], skills: list[str], first: bool) -> str:
    """One occupation's items as first-person sentences of a few items each."""
    sentences = []
    lead = FIRST_ROLE if first else rng.choice(EARLIER_ROLES)
    for items, leads, continuations in ((experience, None, CONTINUATION),
                                        (skills, SKILLS_LEAD, SKILLS_CONTINUATION)):
        k = 0
        while k < len(items):
            n = rng.randint(*ITEMS_PER_SENTENCE)
            chunk = [as_clause(x) for x in items[k:k + n]]
            k += n
            if leads is None:
                opener = lead if not sentences else rng.choice(NEXT_SENTENCE)
            else:
                opener = rng.choice(leads)
            parts = [opener.format(chunk[0])] + [rng.choice(continuations).format(x) for x in chunk[1:]]
            sentences.append("; ".join(parts) + ".")
    return " ".join(sentences)


def boilerplate(rng: random.Random, sentences: tuple, low: int, high: int) -> str:
    """`low` to `high` distinct sentences of a boilerplate list, in a seeded order."""
    return " ".join(rng.sample(sentences, rng.randint(low, min(high, len(sentences)))))


def make_distractor(seed: int, index: int, jobs_with_cvs: dict[str, list[str]],
                    cv_texts: dict[str, str]) -> tuple[list[str], str]:
    """(job_ids, text) of distractor number `index` (1-based): it depends only on the seed, the
    index and the source data, not on how many distractors are made."""
    rng = rng_for(seed, "distractor", str(index))
    jobs = list(jobs_with_cvs)
    k = min(rng.randint(*DISTRACTOR_OCCUPATIONS), len(jobs))
    chosen = rng.sample(jobs, k)
    share = rng.randint(*DISTRACTOR_ITEM_WORDS) // k  # item words taken from each occupation
    roles = []
    for position, job in enumerate(chosen):
        items: list[tuple[str, str]] = []
        for cv in jobs_with_cvs[job]:
            e, s = cv_items(cv_texts[cv])
            items += [x for x in [("experience", x) for x in e] + [("skills", x) for x in s] if x not in items]
        rng.shuffle(items)
        taken, words = [], 0
        for pair in items:
            if words >= share:
                break
            taken.append(pair)
            words += len(pair[1].split())
        experience = [x for what, x in taken if what == "experience"]
        skills = [x for what, x in taken if what == "skills"]
        roles.append(role_paragraph(rng, experience, skills, first=position == 0))
    # Objective first, references last; hobbies and availability somewhere between the roles.
    middle = roles[:]
    for paragraph in (boilerplate(rng, HOBBIES, 2, 4), boilerplate(rng, AVAILABILITY, 2, 3)):
        middle.insert(rng.randint(1, len(middle)), paragraph)
    paragraphs = [boilerplate(rng, OBJECTIVE, 2, 4)] + middle + [boilerplate(rng, REFERENCES, 1, 2)]
    return sorted(chosen), " ".join(" ".join(paragraphs).split())


def distractor_ids(n: int, existing: set) -> list[str]:
    """`cv-d00001` ... for n distractors; exits with an error if one is already a CV id."""
    ids = [DISTRACTOR_ID.format(k) for k in range(1, n + 1)]
    taken = sorted(existing.intersection(ids))
    if taken:
        raise SystemExit(f"error: the source already has CV ids {', '.join(taken[:5])}; distractor "
                         f"ids would collide")
    return ids


def make_distractors(source: str, n: int, seed: int) -> list[tuple[str, list[str], str]]:
    """[(cv_id, job_ids, text)] for n distractor CVs built from the source dataset's CVs."""
    cv_texts: dict[str, str] = {}
    for row in read_kind(source, "cvs"):
        cv_texts[row["cv_id"].strip()] = row["text"]
    jobs_with_cvs = {job: [cv for cv in cvs if cv in cv_texts]
                     for job, cvs in occupations_of_cvs(read_kind(source, "judgments")).items()}
    jobs_with_cvs = {job: cvs for job, cvs in jobs_with_cvs.items() if cvs}
    if len(jobs_with_cvs) < DISTRACTOR_OCCUPATIONS[0]:
        raise SystemExit(f"error: {source} has {len(jobs_with_cvs)} occupations with CVs of relevance "
                         f"{STRICT_RELEVANCE}; distractors need at least {DISTRACTOR_OCCUPATIONS[0]}")
    ids = distractor_ids(n, set(cv_texts))
    made = []
    texts = set(cv_texts.values())
    for index, cv_id in enumerate(ids, start=1):
        job_ids, text = make_distractor(seed, index, jobs_with_cvs, cv_texts)
        if SOC_CODE.search(text):
            raise SystemExit(f"error: distractor {cv_id} would contain an occupation code")
        if text in texts:
            raise SystemExit(f"error: distractor {cv_id} would repeat the text of another CV")
        texts.add(text)
        made.append((cv_id, job_ids, text))
    return made


# --------------------------------------------------------------------------------------------------
# The derived dataset


def derive(source: str, out: str, strict: bool, distractors: int, seed: int) -> dict:
    """Writes the derived dataset to `out` (which must be empty or hold only an earlier output of
    this script) and returns what was written: {"files": {path: (rows, bytes)}, "dropped":
    {relevance: rows}, "distractors": [(cv_id, job_ids, words)]}."""
    for kind in REQUIRED_KINDS:
        if not kind_files(source, kind):
            raise SystemExit(f"error: {source} is not a dataset: no {kind}/*.csv")
    side_file = os.path.join(source, DISTRACTORS_FILE)
    if distractors and os.path.exists(side_file):
        raise SystemExit(f"error: {source} already has distractors ({side_file}); derive from the "
                         f"dataset they were added to")

    written: dict[str, bytes] = {}
    copied: dict[str, str] = {}  # relative path -> source path
    for kind in KINDS:
        for path in kind_files(source, kind):
            copied[os.path.join(kind, os.path.basename(path))] = path
    if os.path.exists(side_file):  # --strict on a dataset with distractors keeps the side file
        copied[DISTRACTORS_FILE] = side_file
    dropped: dict = {}
    if strict:
        for rel in [r for r in copied if r.startswith("judgments" + os.sep)]:
            del copied[rel]
        judgments, dropped = strict_judgment_files(source)
        written.update(judgments)
    made = []
    if distractors:
        if DISTRACTOR_CVS_FILE in copied:
            raise SystemExit(f"error: {source} already has {DISTRACTOR_CVS_FILE}")
        made = make_distractors(source, distractors, seed)
        written[DISTRACTOR_CVS_FILE] = csv_bytes(COLUMNS["cvs"], [(c, t) for c, _, t in made])
        written[DISTRACTORS_FILE] = csv_bytes(("cv_id", "job_ids"), [(c, " ".join(j)) for c, j, _ in made])

    clear_output(out)
    for rel, path in copied.items():
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        shutil.copyfile(path, os.path.join(out, rel))
    for rel, blob in written.items():
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with open(os.path.join(out, rel), "wb") as f:
            f.write(blob)
    write_readme(out, source, strict, distractors, seed)

    summary = {}
    for rel in sorted(set(copied) | set(written)):
        path = os.path.join(out, rel)
        summary[rel] = (len(read_csv(path)[1]), os.path.getsize(path),
                        "copied" if rel in copied else "written")
    return {"files": summary, "dropped": dropped,
            "distractors": [(c, j, len(t.split())) for c, j, t in made]}


def clear_output(out: str) -> None:
    """Removes the files an earlier run wrote to `out` (the dataset's `*.csv` files, the side file
    and README.md), so that no stale file is read with the new ones."""
    for kind in KINDS:
        for path in kind_files(out, kind):
            os.remove(path)
    for name in (DISTRACTORS_FILE, "README.md"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))


def write_readme(out: str, source: str, strict: bool, distractors: int, seed: int) -> None:
    options = (["--strict"] if strict else []) + ([f"--distractors {distractors}"] if distractors else [])
    lines = [
        f"# dataset derived from {source}",
        "",
        f"Written by `python data/derive_dataset.py --source {source} {' '.join(options)} --seed {seed} "
        f"--out {out}`.",
        "",
    ]
    if strict:
        lines.append(f"- judgments: only those of relevance {STRICT_RELEVANCE} (the CV's occupation is the "
                     "job's) are kept.")
    if distractors:
        lines.append(f"- {distractors} distractor CVs in `{DISTRACTOR_CVS_FILE}`, judged for no job; "
                     f"`{DISTRACTORS_FILE}` names the occupations (`job_ids`) each one was built from.")
    lines += [
        "- every other file is a copy of the source's.",
        "",
        "The texts are the source dataset's (a distractor recombines the items of its CVs, with "
        "boilerplate sentences from data/derive_dataset.py), so the source's licence and attribution "
        "apply; for the bundled datasets see data/README.md, \"Licences and attribution\".",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Derive a cvrank dataset from an existing one: keep only the strict (relevance 2) "
                    "judgments and/or add long unjudged distractor CVs. Standard library only; "
                    "deterministic for a given seed.",
        epilog="Examples:\n"
               "  python data/derive_dataset.py --strict --out .scratch/onet-strict\n"
               "  python data/derive_dataset.py --distractors 300 --out .scratch/onet-distractors",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=os.path.join("data", "onet"), metavar="DIR",
                   help="dataset to derive from (default data/onet)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
    p.add_argument("--strict", action="store_true",
                   help=f"keep only the judgments of relevance {STRICT_RELEVANCE}")
    p.add_argument("--distractors", type=int, default=0, metavar="N",
                   help="add N long distractor CVs that no judgment names (default 0)")
    p.add_argument("--seed", type=int, default=42, help="seed of every random choice (default 42)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out (its dataset files are replaced)")
    args = p.parse_args(argv)
    if args.distractors < 0:
        p.error("--distractors must be at least 0")
    if not args.strict and not args.distractors:
        p.error("nothing to derive: give --strict and/or --distractors N")
    check_out(p, args)
    return args


def check_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses (parser.error) an `args.out` that is `args.source`, is not a directory, or is a
    non-empty directory without `args.force`."""
    if os.path.realpath(args.out) == os.path.realpath(args.source):
        parser.error("--out must not be the --source dataset")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"{args.out} exists and is not a directory")
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
        parser.error(f"{args.out} is not empty; pass --force to replace its dataset files")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    stats = derive(args.source, args.out, args.strict, args.distractors, args.seed)
    print(f"wrote {args.out} (from {args.source}, seed {args.seed})")
    for rel, (rows, size, how) in stats["files"].items():
        print(f"  {rel}: {rows:,} rows, {size:,} bytes ({how})")
    if args.strict:
        dropped = ", ".join(f"{n:,} of relevance {r}" for r, n in sorted(stats["dropped"].items(),
                                                                      key=lambda x: str(x[0])))
        print(f"  strict: kept the judgments of relevance {STRICT_RELEVANCE}; dropped {dropped or 'none'}")
    if stats["distractors"]:
        words = sorted(w for _, _, w in stats["distractors"])
        occupations = sorted(len(j) for _, j, _ in stats["distractors"])
        print(f"  distractors: {len(words):,} CVs ({stats['distractors'][0][0]} to "
              f"{stats['distractors'][-1][0]}), words min {words[0]:,}, median {words[len(words) // 2]:,}, "
              f"max {words[-1]:,}; occupations each {occupations[0]} to {occupations[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
