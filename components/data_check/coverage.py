"""What the ranking examples cover, and the data warnings about what they leave out: jobs without a
relevant CV (left out of the ranking examples, so of the metrics) and slices with no example in the
split the Evaluator scores. Read from the counts the Beam checks summarise (checks.JOBS and
checks.SLICE records); plain Python, so the sentences are unit-testable."""

import collections
import dataclasses
from typing import Dict, List, Sequence, Tuple, Union

from components.data_check import report


@dataclasses.dataclass(frozen=True)
class JobCount:
  """The jobs of one split with (`relevant`) or without a relevant CV: how many, and the first few
  job ids in sorted order."""

  split: str
  relevant: bool
  count: int
  sample: Sequence[str]


@dataclasses.dataclass(frozen=True)
class SliceCount:
  """The jobs of one split with (`relevant`) or without a relevant CV whose ranking example has
  value `value` for slice feature `feature`."""

  feature: str
  value: Union[int, str]
  split: str
  relevant: bool
  count: int


def _plural(n: int, one: str, many: str) -> str:
  return one if n == 1 else many


def _grade(threshold: float) -> str:
  return f'{threshold:g}'


def jobs_left_out(jobs: Sequence[JobCount], split: str) -> int:
  """The number of jobs of `split` without a relevant CV."""
  return sum(j.count for j in jobs if j.split == split and not j.relevant)


def assess(jobs: Sequence[JobCount], slices: Sequence[SliceCount], splits: Sequence[str],
           eval_split: str, slice_features: Sequence[str], relevance_threshold: float
           ) -> Tuple[List[report.Problem], List[str]]:
  """(problems, warnings) about the coverage of the ranking examples.

  A problem (the run stops): every job of `eval_split` lacks a relevant CV, so the Evaluator would
  have nothing to score (the slice warnings are then left out). Warnings, one sentence each, in
  this order:
   - per split of `splits` with jobs left out: "3 eval jobs have no relevant CV and are left out of
     the metrics: <the first job ids>, ... (<n> more)";
   - per value of a slice feature (in `slice_features` order, then by value) that some job has but
     no ranking example of `eval_split` has: "slice major_group=31 has no example in the eval
     split and is missing from the metrics (its 4 jobs: 1 eval job without a relevant CV, 3 test
     jobs)".
  """
  problems: List[report.Problem] = []
  warnings: List[str] = []
  eval_jobs = [j for j in jobs if j.split == eval_split]
  eval_scored = any(j.relevant and j.count for j in eval_jobs)
  for split in splits:
    left_out = [j for j in jobs if j.split == split and not j.relevant and j.count]
    if not left_out:
      continue
    count = sum(j.count for j in left_out)
    sample = sorted(name for j in left_out for name in j.sample)
    if split == eval_split and not eval_scored:
      problems.append(report.Problem(
          'judgments', 'relevance',
          f'no {split} job has a relevant CV (relevance >= {_grade(relevance_threshold)}), so '
          'the evaluation has no job to score', count, sample))
      continue
    more = f', ... ({count - len(sample)} more)' if count > len(sample) else ''
    warnings.append(
        f'{count} {split} {_plural(count, "job has", "jobs have")} no relevant CV and '
        f'{_plural(count, "is", "are")} left out of the metrics: {", ".join(sample)}{more}')
  # Without an eval split, or with nothing in it to score, every slice would be named.
  if eval_split in splits and not problems:
    warnings += _empty_slices(slices, eval_split, slice_features)
  return problems, warnings


def _empty_slices(slices: Sequence[SliceCount], eval_split: str,
                  slice_features: Sequence[str]) -> List[str]:
  """Warnings for slice values with jobs but no ranking example in `eval_split`."""
  # (feature, value) -> {(split, relevant): jobs}
  by_value: Dict[Tuple[str, Union[int, str]], Dict[Tuple[str, bool], int]] = (
      collections.defaultdict(lambda: collections.defaultdict(int)))
  for s in slices:
    if s.feature in slice_features and s.count:
      by_value[(s.feature, s.value)][(s.split, s.relevant)] += s.count

  def order(key):
    feature, value = key
    return slice_features.index(feature), isinstance(value, str), value

  warnings = []
  for feature, value in sorted(by_value, key=order):
    counts = by_value[(feature, value)]
    if counts.get((eval_split, True)):
      continue
    parts = []
    left_out = counts.get((eval_split, False), 0)
    if left_out:
      parts.append(f'{left_out} {eval_split} {_plural(left_out, "job", "jobs")} without a '
                   'relevant CV')
    elsewhere: Dict[str, int] = collections.defaultdict(int)
    for (split, _), n in counts.items():
      if split != eval_split:
        elsewhere[split] += n
    parts += [f'{n} {split} {_plural(n, "job", "jobs")}' for split, n in sorted(elsewhere.items())]
    total = sum(counts.values())
    warnings.append(
        f'slice {feature}={value} has no example in the {eval_split} split and is missing from '
        f'the metrics (its {total} {_plural(total, "job", "jobs")}: {", ".join(parts)})')
  return warnings

