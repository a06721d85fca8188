"""The CI speed rule: is the candidate slower than the reference, judged over A/B readings?

A reading is one A/B pair of one (model, backend): the reference's and the candidate's
load-normalised training speed, measured back to back on this host. The rule is
sequential, as regression detectors on shared hardware are (Chromium's Pinpoint: a
Mann-Whitney test, "different" at p ≤ 0.01, more samples while unsure):

1. **Same** as soon as the median of the pairs' slowdowns (reference ÷ candidate − 1) is
   at most `trigger`. One reading suffices for most figures.
2. Otherwise **more**: another pair, up to `max_readings` in all.
3. After the last reading, **regressed** if the candidate's speeds lie below the reference's
   by a one-sided Mann-Whitney U test at p ≤ `alpha` (with 5 readings a side: at most one
   of the 25 cross pairs out of order); otherwise **undecided**, which passes the check
   with a warning line: a reading that cannot be told from noise fails nobody's change.

Why not each side's best reading (the rule until 2026-12-05): one reference reading much
luckier than the rest (its calibration slowed where its epoch was not) raised the bar for
every candidate reading and failed unchanged code. The rank test weighs each reading once.
The figures behind the thresholds, replayed over a corpus of A/B readings of unchanged
code (`replay`; `tests/data/ci_speed_corpus.json`), are in docs/ci.md.
"""

from __future__ import annotations

import enum
import functools
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import mannwhitneyu

Pair = tuple[float, float]  # (reference speed, candidate speed); higher is faster


class Decision(enum.Enum):
    SAME = "same"
    MORE = "more"
    REGRESSED = "regressed"
    UNDECIDED = "undecided"


def slowdown(pair: Pair) -> float:
    """How much slower the candidate ran than the reference: reference ÷ candidate − 1."""
    reference, candidate = pair
    return reference / candidate - 1


@dataclass(frozen=True)
class SpeedRule:
    """The sequential A/B rule (module docstring).

    Attributes:
        trigger: a median slowdown at most this is "same"; above it, more readings.
        alpha: the one-sided Mann-Whitney p-value at or below which the candidate is slower.
        max_readings: A/B pairs at most, the first included.
    """

    trigger: float = 0.08
    alpha: float = 0.01
    max_readings: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.trigger < 1:
            raise ValueError(f"trigger must be in (0, 1). Received: trigger={self.trigger}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1). Received: alpha={self.alpha}")
        if self.max_readings < 1:
            raise ValueError(f"max_readings must be ≥ 1. Received: "
                             f"max_readings={self.max_readings}")

    def decide(self, pairs: Sequence[Pair]) -> Decision:
        """The decision after these readings of one figure, in the order taken.

        Raises:
            ValueError: no reading.
        """
        if not pairs:
            raise ValueError("the speed rule needs at least one A/B reading")
        if statistics.median(slowdown(p) for p in pairs) <= self.trigger:
            return Decision.SAME
        if len(pairs) < self.max_readings:
            return Decision.MORE
        return Decision.REGRESSED if self.p_value(pairs) <= self.alpha else Decision.UNDECIDED

    @staticmethod
    def p_value(pairs: Sequence[Pair]) -> float:
        """One-sided Mann-Whitney U p-value of "the candidate's speeds are lower"."""
        return _rank_test_p_value(tuple(sorted(reference for reference, _ in pairs)),
                                  tuple(sorted(candidate for _, candidate in pairs)))


RULE = SpeedRule()


@functools.lru_cache(maxsize=65536)
def _rank_test_p_value(references: tuple[float, ...], candidates: tuple[float, ...]) -> float:
    # Cached on the sorted readings: a replay meets the same few sets of readings in
    # thousands of orders, and scipy's exact test was most of its time.
    return float(mannwhitneyu(candidates, references, alternative="less",
                              method="exact").pvalue)


def run_sequence(rule, readings: Sequence[Pair]) -> tuple[Decision, int]:
    """Plays `rule` over readings as a check would take them: one at a time until decided.

    Args:
        rule: anything with `decide(pairs)` and `max_readings`.
        readings: at least `rule.max_readings` pairs, in the order to take them.

    Returns:
        The decision and how many readings it took.
    """
    for taken in range(1, rule.max_readings + 1):
        decision = rule.decide(readings[:taken])
        if decision is not Decision.MORE:
            return decision, taken
    raise AssertionError(f"{rule} asked for more than its max_readings")


@dataclass(frozen=True)
class ReplayResult:
    """A rule replayed over a corpus.

    Attributes:
        checks: simulated checks (each judges every figure of the corpus once).
        false_alarms: checks of unchanged code with at least one figure "regressed".
        undecided: checks with at least one figure undecided (and none regressed).
        readings_per_check: the mean A/B readings a check took, all figures together.
        detected: per injected slowdown, the share of (check, figure) judgements that
            called the slowed figure "regressed".
    """

    checks: int
    false_alarms: int
    undecided: int
    readings_per_check: float
    detected: dict[float, float]

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.checks


def _orders(count: int, checks: int, seed: int) -> Iterable[list[int]]:
    """Reading orders: each reading first once (the rest after it, cyclically), then
    random permutations, `checks` in all."""
    rng = random.Random(seed)
    for number in range(checks):
        if number < count:
            yield [(number + k) % count for k in range(count)]
        else:
            yield rng.sample(range(count), count)


def replay(figures: dict[str, list[Pair]], rule=RULE, slowdowns: Sequence[float] = (0.2, 0.3),
           checks: int = 2000, seed: int = 0) -> ReplayResult:
    """Replays `rule` over A/B readings of unchanged code, per figure.

    Each simulated check draws, for every figure, an order of that figure's readings and
    takes them as the check would (`run_sequence`). The same orders, with every candidate
    speed divided by 1 + s, measure how often a real slowdown s is caught.

    Args:
        figures: figure name → its (reference, candidate) readings, each of unchanged code;
            at least `rule.max_readings` each.
        rule: the rule to replay.
        slowdowns: injected slowdowns whose detection rate to measure.
        checks: simulated checks.
        seed: of the random orders.
    """
    short = {name: len(pairs) for name, pairs in figures.items() if len(pairs) < rule.max_readings}
    if short:
        raise ValueError(f"each figure needs ≥ {rule.max_readings} readings. Received: {short}")
    false_alarms = undecided = readings = 0
    caught = dict.fromkeys(slowdowns, 0)
    orders = {name: list(_orders(len(pairs), checks, seed + i))
              for i, (name, pairs) in enumerate(sorted(figures.items()))}
    for number in range(checks):
        decisions = []
        for name, pairs in figures.items():
            ordered = [pairs[i] for i in orders[name][number]]
            decision, taken = run_sequence(rule, ordered)
            decisions.append(decision)
            readings += taken
            for injected in slowdowns:
                slowed = [(reference, candidate / (1 + injected))
                          for reference, candidate in ordered]
                caught[injected] += run_sequence(rule, slowed)[0] is Decision.REGRESSED
        false_alarms += Decision.REGRESSED in decisions
        undecided += Decision.UNDECIDED in decisions and Decision.REGRESSED not in decisions
    judgements = checks * len(figures)
    return ReplayResult(checks, false_alarms, undecided, readings / checks,
                        {s: n / judgements for s, n in caught.items()})


def centred(figures: dict[str, list[Pair]]) -> dict[str, list[Pair]]:
    """The readings with each figure's median candidate ÷ reference ratio taken out.

    The corpus's two sides are the baseline's commit and a later one, and some figures
    differ between them by more than noise (TF vgg16's candidate read 8% faster on median):
    a real difference, which would hide part of an injected slowdown. Centred, the readings
    hold the noise alone, which is what a rule's power is measured on.
    """
    return {name: [(reference, candidate * statistics.median(r / c for r, c in pairs))
                   for reference, candidate in pairs]
            for name, pairs in figures.items()}


def swapped(figures: dict[str, list[Pair]]) -> dict[str, list[Pair]]:
    """The readings with the two sides exchanged: unchanged code read the other way round."""
    return {name: [(candidate, reference) for reference, candidate in pairs]
            for name, pairs in figures.items()}
