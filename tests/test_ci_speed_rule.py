"""The CI speed rule (benchmarks.ci.speed_rule), and its false-alarm and detection rates
replayed over the committed corpus of A/B readings of unchanged code (docs/ci.md)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from benchmarks.ci.corpus import speed_pairs
from benchmarks.ci.speed_rule import (
    RULE,
    Decision,
    SpeedRule,
    centred,
    replay,
    run_sequence,
    slowdown,
    swapped,
)

CORPUS = Path(__file__).parent / "data" / "ci_speed_corpus.json"
# The goal: at most 1 false alarm in 50 checks of unchanged code, and 95% of 20% slower
# steps caught, on every host the corpus was read on. Neither host reaches the 95% yet: a
# vgg16 worker's readings spread about 10% between processes on each (TF's on the AVX-512
# EPYC, recorded as "AMD EPYC" before `env.cpu` named the model; PyTorch's on the AVX2 one;
# docs/ci.md), so the floors are what the rule reached on each, kept from eroding.
MAX_FALSE_ALARM_RATE = 1 / 50
MIN_DETECTION = {
    "AMD EPYC": {0.2: 0.85, 0.3: 0.90},
    "AMD EPYC (family 25, model 1; AVX2)": {0.2: 0.85, 0.3: 0.95},
}


class BestOfReadings:
    """The rule until 2026-12-05, for comparison: a first reading more than 15% slower is
    read again, and a figure fails only if each side's best reading is still more than
    15% apart after 5 readings."""

    max_readings = 5
    threshold = 0.15

    def decide(self, pairs):
        if len(pairs) == 1:
            return Decision.SAME if slowdown(pairs[0]) <= self.threshold else Decision.MORE
        best = (max(r for r, _ in pairs), max(c for _, c in pairs))
        if slowdown(best) <= self.threshold:
            return Decision.SAME
        return Decision.REGRESSED if len(pairs) == self.max_readings else Decision.MORE


def _pairs(*slowdowns: float) -> list[tuple[float, float]]:
    return [(100.0 * (1 + s), 100.0) for s in slowdowns]


@pytest.mark.parametrize("readings, decision", [
    ([0.05], Decision.SAME),                        # within the trigger: one reading
    ([0.07], Decision.SAME),
    ([0.10], Decision.MORE),
    ([0.30, 0.0, -0.02], Decision.SAME),            # the median came back
    ([0.30, 0.25, 0.0, 0.28], Decision.MORE),
    ([0.30, 0.25, 0.20, 0.28, 0.22], Decision.REGRESSED),
])
def test_the_rule_stops_when_the_median_clears_and_fails_only_on_the_last_reading(
        readings, decision):
    assert RULE.decide(_pairs(*readings)) is decision


def test_five_readings_fail_only_when_the_ranks_part():
    # Every candidate reading slower than every reference reading: U = 0, p = 1/252.
    parted = [(100.0 + i, 80.0 + i) for i in range(5)]
    assert RULE.p_value(parted) == pytest.approx(1 / 252)
    assert RULE.decide(parted) is Decision.REGRESSED
    # Slower by 15% on median, but one reference reading is the slowest of all ten: the
    # ranks overlap (U = 5, p = 19/252) and the figure stays undecided, which passes with a warning.
    overlapping = [(100.0, 85.0), (101.0, 86.0), (102.0, 87.0), (103.0, 88.0), (84.0, 89.0)]
    assert statistics.median(slowdown(p) for p in overlapping) > RULE.trigger
    assert RULE.p_value(overlapping) > RULE.alpha
    assert RULE.decide(overlapping) is Decision.UNDECIDED


@pytest.mark.parametrize("fields, message", [
    ({"trigger": 0.0}, r"trigger must be in \(0, 1\)"),
    ({"alpha": 1.5}, r"alpha must be in \(0, 1\)"),
    ({"max_readings": 0}, "max_readings must be ≥ 1"),
])
def test_the_rule_is_validated_at_the_door(fields, message):
    with pytest.raises(ValueError, match=message):
        SpeedRule(**fields)


def test_a_sequence_stops_at_the_first_decision():
    assert run_sequence(RULE, _pairs(0.3, 0.0, 0.0, 0.3, 0.3)) == (Decision.SAME, 3)
    assert run_sequence(RULE, _pairs(0.01, 0.3, 0.3, 0.3, 0.3)) == (Decision.SAME, 1)


def test_replay_counts_a_noisy_figure_as_false_alarms_and_a_steady_one_as_caught():
    steady = {"m b": _pairs(0.0, 0.01, -0.01, 0.02, -0.02, 0.0)}
    result = replay(steady, checks=100)
    assert result.false_alarms == 0 and result.readings_per_check == 1.0
    assert result.detected[0.3] == 1.0
    # A figure whose candidate always reads 20% slower is unchanged code only in name.
    biased = {"m b": [(100.0 * (1.2 + i / 100), 100.0) for i in range(6)]}
    assert replay(biased, checks=100).false_alarm_rate == 1.0


def test_replay_needs_enough_readings_per_figure():
    with pytest.raises(ValueError, match="each figure needs ≥ 5 readings"):
        replay({"m b": _pairs(0.0, 0.0)})


@pytest.mark.parametrize("cpu", sorted(MIN_DETECTION))
def test_the_committed_corpus_keeps_false_alarms_under_1_in_50(cpu, capsys):
    """The rule, replayed over one host's A/B readings of unchanged code, as read and
    centred (each figure's median offset between the two commits taken out): at most 1
    false alarm in 50 checks, and the detection of a 20% and 30% slower candidate on the
    centred readings. The old best-of-readings rule's figures are printed beside it."""
    figures = speed_pairs(CORPUS)[cpu]
    assert len(figures) == 8 and min(map(len, figures.values())) >= RULE.max_readings
    results = {}
    for corpus, readings in (("as read", figures), ("centred", centred(figures)),
                             ("centred, sides swapped", swapped(centred(figures)))):
        for name, rule in (("sequential A/B rule", RULE), ("best of readings (old)",
                                                          BestOfReadings())):
            result = results[corpus, name] = replay(readings, rule)
            with capsys.disabled():
                print(f"\n{cpu}: {name}, {corpus}: {result.checks} checks over "
                      f"{len(readings)} figures, false alarms {result.false_alarm_rate:.2%}, "
                      f"undecided {result.undecided / result.checks:.2%}, readings per "
                      f"check {result.readings_per_check:.2f}, detection "
                      + ", ".join(f"{s:.0%}: {r:.1%}" for s, r in result.detected.items()))
    for corpus in ("as read", "centred", "centred, sides swapped"):
        assert results[corpus, "sequential A/B rule"].false_alarm_rate <= MAX_FALSE_ALARM_RATE
    detected = results["centred", "sequential A/B rule"].detected
    for injected, floor in MIN_DETECTION[cpu].items():
        assert detected[injected] >= floor, (injected, detected)


def test_every_host_in_the_corpus_has_its_floors():
    """A host whose readings enter the corpus is replayed too: its floors are stated."""
    assert set(speed_pairs(CORPUS)) == set(MIN_DETECTION)
