"""ClickBench's score: one number per engine (lower is better; 1 is the fastest on every query).

ClickBench's method (its README, "Results Usage And Scoreboards", and the summary code of its page),
applied to our columns (an engine of one run) separately for hot and cold times:

1. A query's time: hot, the median client time of its timed runs (ClickBench takes the best of its
   two hot runs; ours are ten runs with different parameters, so the median is the typical one);
   cold, the one run right after the restart. Only a correct answer has a time.
2. Per query, the baseline is the fastest time of any column; the ratio is
   (time + 10 ms) / (baseline + 10 ms): 1 for the fastest, and a 0 ms answer is not infinitely
   better than a 10 ms one.
3. A query without a time (wrong answer, error, unsupported in the engine's dialect, not run, or
   missing from the results) scores as the penalty time 2 x max(300 s, the column's slowest
   answered time): as ClickBench says, failing a query tells about the system's maturity or
   limits, and it must cost more than any answer, however slow. With our short queries this is
   600 s against milliseconds, so one missing query outweighs any speed on the others: read the
   score beside the count of queries answered.
4. The score is the geometric mean of the ratios over every query of the suite (ratios are
   multiplicative: 2x faster on one query and 2x slower on another cancel). A query no column
   answered has no baseline and is left out, as on ClickBench's page; a column that answered no
   query at all (a skipped engine) gets no score rather than a penalty-only one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SMOOTHING_S = 0.010
PENALTY_FACTOR = 2.0
PENALTY_FLOOR_S = 300.0


def ratio(seconds: float, best: float) -> float:
    """ClickBench's smoothed ratio to the best."""
    return (seconds + SMOOTHING_S) / (best + SMOOTHING_S)


@dataclass
class Score:
    column: str
    score: float | None  # None: the column answered no query
    answered: int
    queries: int  # the suite's queries that have a baseline
    penalty_s: float | None  # the time a missing query counts as
    penalized: dict[str, str] = field(default_factory=dict)  # query -> why it has no time
    ratios: dict[str, float] = field(default_factory=dict)


def scores(times: dict[str, dict[str, float | None]], why: dict[str, dict[str, str]]) -> list[Score]:
    """`times[column][query]`: seconds of a correct answer, or None; `why[column][query]`: the status of a
    query without a time. Queries are the union over columns; a column lacking one counts it as missing.
    Returns the columns best first, unscored ones last."""
    queries = sorted({q for per in times.values() for q in per})
    answered = {q: [t for per in times.values() if (t := per.get(q)) is not None] for q in queries}
    baseline = {q: min(ts) for q, ts in answered.items() if ts}
    out = []
    for column, per in times.items():
        own = [t for t in per.values() if t is not None]
        if not own:
            out.append(Score(column, None, 0, len(baseline), None))
            continue
        penalty = PENALTY_FACTOR * max(PENALTY_FLOOR_S, max(own))
        entry = Score(column, None, len(own), len(baseline), penalty)
        for q, best in baseline.items():
            t = per.get(q)
            if t is None:
                entry.penalized[q] = why.get(column, {}).get(q, "missing")
            entry.ratios[q] = ratio(penalty if t is None else t, best)
        entry.score = math.exp(sum(math.log(r) for r in entry.ratios.values()) / len(entry.ratios))
        out.append(entry)
    return sorted(out, key=lambda s: (s.score is None, s.score or 0.0))
