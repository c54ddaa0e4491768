"""`cvrank query`: a plain TF Serving REST client (standard library only), so it works against
`cvrank serve` and real TensorFlow Serving alike."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import List

DEFAULT_URL = "http://127.0.0.1:8501"


class QueryError(Exception):
    """The server could not be reached or answered with an error; the message says which."""


@dataclasses.dataclass
class Match:
    rank: int
    cv_id: str
    score: float
    snippet: str


def rank_cvs(text: str, url: str = DEFAULT_URL, model: str = "cvrank", top_k: int = 10,
             timeout: float = 30.0) -> List[Match]:
    """The best `top_k` CVs for job description `text` from the model's `serving_default` signature."""
    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    body = json.dumps({"signature_name": "serving_default", "instances": [text]}).encode("utf-8")
    request = urllib.request.Request(endpoint, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise QueryError(f"{endpoint} answered HTTP {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise QueryError(f"cannot reach a model server at {url} ({reason}); start one with `make serve` "
                         "or `bin/cvrank serve`") from None
    try:
        [prediction] = payload["predictions"]
        ids, scores = prediction["cv_ids"], prediction["scores"]
        snippets = prediction.get("snippets", [""] * len(ids))
    except (KeyError, TypeError, ValueError):
        raise QueryError(f"{endpoint} answered with an unexpected body: {str(payload)[:200]}") from None
    return [Match(rank + 1, cv_id, float(score), snip)
            for rank, (cv_id, score, snip) in enumerate(zip(ids[:top_k], scores[:top_k], snippets[:top_k]))]


def format_matches(matches: List[Match]) -> str:
    """A table for a terminal: rank, score, CV id, the CV's first words."""
    if not matches:
        return "no CVs in the index"
    width = max(len(m.cv_id) for m in matches)
    lines = [f"{'rank':>4}  {'score':>6}  {'cv_id':<{width}}  cv"]
    lines += [f"{m.rank:>4}  {m.score:>6.3f}  {m.cv_id:<{width}}  {m.snippet}" for m in matches]
    return "\n".join(lines)
