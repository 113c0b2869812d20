"""Fitting a network to its limit on measured latency: tighten after a miss, raise the budget while
the network leaves budget unused, keep the highest budget measured within the limit."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hant.errors import InfeasibleBudgetError
from hant.latency import LatencyTarget
from hant.latency.fit import SLACK, chosen_round, fit_measured


def convs(n: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Conv2d(32, 32, 3, padding=1) for _ in range(max(1, n)))).eval()


TARGET = LatencyTarget(batch_size=4, threads=1)
TEACHER = convs(12)


def fit(first_budget: float, rounds: int = 4, **kwargs):
    """Networks of ``round(budget)`` convolutions against a limit of 0.46 of the 12-conv teacher: 5.5
    convolutions, so that no network sits on the limit (5 measure 9 % under it, 6 measure 9 % over)."""
    return fit_measured(lambda b: (round(b), convs(round(b))), TEACHER, (32, 24, 24), TARGET, first_budget,
                        lambda teacher_ms: 0.46 * teacher_ms, rounds=rounds, time_budget_s=1.0, **kwargs)


def test_a_network_far_under_its_limit_gets_a_higher_budget() -> None:
    result = fit(2.0)
    first, kept = result.rounds[0], chosen_round(result.rounds)
    assert first["within"] and first["student_ms"] < (1 - SLACK) * first["limit_ms"]
    assert len(result.rounds) > 1 and kept["budget_ms"] > first["budget_ms"]
    assert kept["within"] and result.rounds[result.chosen] is kept and result.result == round(kept["budget_ms"])


def test_without_slack_the_first_network_within_its_limit_is_kept() -> None:
    result = fit(2.0, use_slack=False)
    assert len(result.rounds) == 1 and result.rounds[0]["chosen"] and result.result == 2


def test_a_miss_tightens_the_budget_and_a_network_within_is_kept() -> None:
    result = fit(11.0)
    assert not result.rounds[0]["within"]
    assert result.rounds[1]["budget_ms"] < result.rounds[0]["budget_ms"]
    kept = chosen_round(result.rounds)
    assert kept["within"] and result.result <= 6


def test_a_near_miss_is_measured_again_and_judged_on_both() -> None:
    """Six convolutions against a limit 5 % under them: a miss by less than SLACK, so the pair is
    measured twice and the round's numbers are the mean of both."""
    result = fit_measured(lambda b: (6, convs(6)), TEACHER, (32, 24, 24), TARGET, 6.0,
                          lambda teacher_ms: 0.5 / 1.05 * teacher_ms, rounds=1, time_budget_s=1.0)
    first = result.rounds[0]
    assert len(first["remeasured"]) == 2
    assert first["student_ms"] == pytest.approx(sum(m["student_ms"] for m in first["remeasured"]) / 2)
    assert first["teacher_ms"] == pytest.approx(sum(m["teacher_ms"] for m in first["remeasured"]) / 2)
    assert first["limit_ms"] == pytest.approx(0.5 / 1.05 * first["teacher_ms"])


def floored(budget: float) -> tuple[int, nn.Module]:
    """Networks of ``round(budget)`` convolutions, none below three."""
    if budget < 3:
        raise InfeasibleBudgetError(budget, 3.0)
    return round(budget), convs(round(budget))


def test_a_tightened_budget_below_the_floor_builds_the_fastest_network() -> None:
    """The first budget is feasible; the miss scales it below three convolutions, so the next round
    is the three-convolution floor instead of an error."""
    result = fit_measured(floored, TEACHER, (32, 24, 24), TARGET, 11.0, lambda teacher_ms: 0.1 * teacher_ms,
                          rounds=4, time_budget_s=1.0)
    assert not result.rounds[0]["within"] and result.rounds[-1]["budget_ms"] == 3.0
    assert len(result.rounds) == 2 and result.result == 3


def test_an_infeasible_first_budget_is_the_users_error() -> None:
    with pytest.raises(InfeasibleBudgetError):
        fit_measured(floored, TEACHER, (32, 24, 24), TARGET, 1.0, lambda teacher_ms: 0.1 * teacher_ms,
                     rounds=4, time_budget_s=1.0)
