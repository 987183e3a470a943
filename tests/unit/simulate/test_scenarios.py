"""Drift scenarios of the fraud simulator on a small config: the book's rows before D, the drift after it."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slipstream.cli import app
from slipstream.cli.simulate import SCENARIO_HELP, labels_path
from slipstream.streams.simulate import SCENARIOS, DriftScenario, FraudSimConfig, label_events, simulate_transactions
from slipstream.streams.simulate.fraud import _customers, _terminals, _terminals_in_reach
from slipstream.streams.simulate.scenarios import CARD_TESTING

CONFIG = FraudSimConfig(n_customers=400, n_terminals=300, nb_days=24, radius=20.0)
D = 12
CARD_TESTING_AT_D = DriftScenario("new-fraud-pattern", start_day=D, cards_per_day=5)
SHIFT_AT_D = DriftScenario("covariate-shift", start_day=D, hub_share=0.3, n_hubs=4)


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    return simulate_transactions(CONFIG)


@pytest.fixture(scope="module")
def card_testing() -> pd.DataFrame:
    return simulate_transactions(CONFIG, scenario=CARD_TESTING_AT_D)


@pytest.fixture(scope="module")
def shifted() -> pd.DataFrame:
    return simulate_transactions(CONFIG, scenario=SHIFT_AT_D)


def _before(frame: pd.DataFrame, day: int = D) -> pd.DataFrame:
    return frame[frame["TX_TIME_DAYS"] < day].reset_index(drop=True)


def _after(frame: pd.DataFrame, day: int = D) -> pd.DataFrame:
    return frame[frame["TX_TIME_DAYS"] >= day].reset_index(drop=True)


def _well_formed(frame: pd.DataFrame) -> None:
    assert frame["TRANSACTION_ID"].tolist() == list(range(len(frame)))
    assert frame["TX_TIME_SECONDS"].is_monotonic_increasing
    assert frame["TX_DATETIME"].is_monotonic_increasing
    np.testing.assert_array_equal(frame["TX_TIME_DAYS"].to_numpy(), frame["TX_TIME_SECONDS"].to_numpy() // 86400)
    np.testing.assert_array_equal(frame["TX_FRAUD"].to_numpy(), (frame["TX_FRAUD_SCENARIO"] > 0).astype(np.int64))
    for column in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD"):
        assert frame[column].dtype == np.int64, column


def test_none_is_the_book(book: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate_transactions(CONFIG, scenario=DriftScenario()), book)
    pd.testing.assert_frame_equal(simulate_transactions(CONFIG, scenario=DriftScenario("none", start_day=3)), book)


@pytest.mark.parametrize("scenario", [CARD_TESTING_AT_D, SHIFT_AT_D], ids=lambda s: s.name)
def test_rows_before_the_start_day_are_the_books(scenario: DriftScenario, book: pd.DataFrame) -> None:
    drifted = simulate_transactions(CONFIG, scenario=scenario)
    _well_formed(drifted)
    pd.testing.assert_frame_equal(_before(drifted), _before(book))
    assert not _after(drifted).equals(_after(book))


@pytest.mark.parametrize("scenario", [CARD_TESTING_AT_D, SHIFT_AT_D], ids=lambda s: s.name)
def test_a_pure_function_of_config_and_scenario(scenario: DriftScenario) -> None:
    first = simulate_transactions(CONFIG, scenario=scenario)
    pd.testing.assert_frame_equal(simulate_transactions(CONFIG, scenario=scenario), first)
    other_seed = DriftScenario(scenario.name, start_day=D, seed=scenario.seed + 1, cards_per_day=5, n_hubs=4)
    assert not simulate_transactions(CONFIG, scenario=other_seed).equals(first)


def test_start_day_as_a_date_is_that_day(card_testing: pd.DataFrame) -> None:
    as_date = DriftScenario("new-fraud-pattern", start_day=date(2018, 4, 13), cards_per_day=5)
    assert as_date.first_day(CONFIG) == D
    pd.testing.assert_frame_equal(simulate_transactions(CONFIG, scenario=as_date), card_testing)
    assert DriftScenario("covariate-shift").first_day(CONFIG) == CONFIG.nb_days // 2


def test_card_testing_adds_bursts_of_small_night_frauds(card_testing: pd.DataFrame, book: pd.DataFrame) -> None:
    tested = card_testing[card_testing["TX_FRAUD_SCENARIO"] == CARD_TESTING]
    assert (tested["TX_FRAUD"] == 1).all()
    assert tested["TX_TIME_DAYS"].min() == D
    assert tested["TX_TIME_DAYS"].max() == CONFIG.nb_days - 1
    assert (tested["TX_DATETIME"].dt.hour <= 6).all()  # TX_DURING_NIGHT
    low, high = CARD_TESTING_AT_D.test_amount
    assert tested["TX_AMOUNT"].between(low, high).all()
    np.testing.assert_array_equal(tested["TX_AMOUNT"].round(2), tested["TX_AMOUNT"])
    bursts = tested.groupby(["TX_TIME_DAYS", "CUSTOMER_ID"]).size()
    assert bursts.groupby(level=0).size().eq(CARD_TESTING_AT_D.cards_per_day).all()  # 5 distinct cards a day
    assert bursts.between(*CARD_TESTING_AT_D.burst_size).all()
    customers = _customers(CONFIG.n_customers)
    reach = _terminals_in_reach(customers.xy, _terminals(CONFIG.n_terminals), CONFIG.radius)
    for customer, terminal in zip(tested["CUSTOMER_ID"], tested["TERMINAL_ID"], strict=True):
        assert terminal in reach[customer]
    # everything else is the book's table, renumbered around the new rows
    rest = card_testing[card_testing["TX_FRAUD_SCENARIO"] != CARD_TESTING].drop(columns="TRANSACTION_ID")
    pd.testing.assert_frame_equal(rest.reset_index(drop=True), book.drop(columns="TRANSACTION_ID"))


def test_covariate_shift_moves_amounts_and_terminals_not_the_rules(shifted: pd.DataFrame, book: pd.DataFrame) -> None:
    after, base = _after(shifted), _after(book)
    np.testing.assert_array_equal(after["TX_TIME_SECONDS"], base["TX_TIME_SECONDS"])
    np.testing.assert_array_equal(after["CUSTOMER_ID"], base["CUSTOMER_ID"])
    inflated = after["TX_FRAUD_SCENARIO"].to_numpy() == 3
    np.testing.assert_array_equal(inflated, base["TX_FRAUD_SCENARIO"].to_numpy() == 3)  # same picks, same rule
    factor = SHIFT_AT_D.amount_factor
    np.testing.assert_array_equal(after["TX_AMOUNT"][~inflated], (base["TX_AMOUNT"][~inflated] * factor).round(2))
    # scenario 3 multiplies the rounded, shifted amount by 5 (25 if picked twice): rounding moves it by <= 25 * 0.005
    np.testing.assert_allclose(after["TX_AMOUNT"][inflated], base["TX_AMOUNT"][inflated] * factor, rtol=0, atol=0.125)
    scenario, amount = after["TX_FRAUD_SCENARIO"].to_numpy(), after["TX_AMOUNT"].to_numpy()
    assert (amount[scenario == 1] > 220).all()
    assert (amount[scenario == 0] <= 220).all()
    assert (scenario == 1).sum() > (base["TX_FRAUD_SCENARIO"] == 1).sum()  # more amounts cross the threshold
    hubs = SHIFT_AT_D.hubs(CONFIG)
    assert hubs.size == SHIFT_AT_D.n_hubs
    moved = after["TERMINAL_ID"].to_numpy() != base["TERMINAL_ID"].to_numpy()
    assert np.isin(after["TERMINAL_ID"][moved], hubs).all()
    assert abs(moved.mean() - SHIFT_AT_D.hub_share) < 0.03
    assert not (shifted["TERMINAL_ID"].isin(hubs) & (shifted["TX_FRAUD_SCENARIO"] == 2)).any()


def test_labels_come_from_the_same_path(card_testing: pd.DataFrame) -> None:
    labels = label_events(card_testing, CONFIG)
    assert labels["transaction_id"].is_unique
    assert len(labels) == len(card_testing)
    assert set(labels["fraud_scenario"]) == {0, 1, 2, 3, CARD_TESTING}
    assert ((labels["event_time"] - labels["tx_event_time"]) == pd.Timedelta(CONFIG.label_delay)).all()
    assert labels.loc[labels["fraud_scenario"] == CARD_TESTING, "is_fraud"].all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "foo"}, "unknown scenario 'foo'; choose none, new-fraud-pattern, covariate-shift"),
        ({"name": "covariate-shift", "start_day": 500}, "start_day must be in [1, 24), got 500"),
        ({"name": "covariate-shift", "start_day": 0}, "start_day must be in [1, 24), got 0"),
        ({"name": "none", "start_day": 24}, "start_day must be in [1, 24), got 24"),
        ({"name": "new-fraud-pattern", "start_day": date(2018, 3, 31)}, "got 2018-03-31 (day -1)"),
        ({"start_day": "12"}, "start_day must be a day number or a date, got '12'"),
        ({"start_day": True}, "got True"),
        ({"start_day": datetime(2018, 4, 13)}, "start_day must be a day number or a date"),  # noqa: DTZ001
        ({"cards_per_day": 0}, "DriftScenario.cards_per_day must be an integer >= 1, got 0"),
        ({"burst_size": (5, 2)}, "DriftScenario.burst_size must be a pair (low, high) with 1 <= low <= high"),
        ({"burst_size": (0, 2)}, "got (0, 2)"),
        ({"test_amount": (0.0, 1.0)}, "DriftScenario.test_amount must be a pair"),
        ({"amount_factor": 0}, "DriftScenario.amount_factor must be a positive finite number, got 0"),
        ({"amount_factor": float("inf")}, "got inf"),
        ({"hub_share": 1.5}, "DriftScenario.hub_share must be in [0, 1], got 1.5"),
        ({"n_hubs": 0}, "DriftScenario.n_hubs must be an integer >= 1, got 0"),
        ({"name": "covariate-shift", "n_hubs": 10_000}, "DriftScenario.n_hubs must be at most"),
        ({"seed": -1}, "DriftScenario.seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_values_are_named_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        simulate_transactions(CONFIG, scenario=DriftScenario(**kwargs))  # refused before any draw
    assert "\n" not in str(info.value)


def test_cli_writes_a_drifted_simulation(tmp_path: Path) -> None:
    out = tmp_path / "sim.parquet"
    args = ["simulate", "fraud", "-o", str(out), "--customers", "400", "--terminals", "300", "--days", "24"]
    result = CliRunner().invoke(app, [*args, "--scenario", "new-fraud-pattern", "--drift-start", "2018-04-13"])
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(out)
    assert set(written["tx_fraud_scenario"]) == {0, 1, 2, 3, CARD_TESTING}
    assert written["transaction_id"].tolist() == list(range(len(written)))
    assert len(pd.read_parquet(labels_path(out))) == len(written)
    cli_config = FraudSimConfig(n_customers=400, n_terminals=300, nb_days=24)  # the CLI's radius: the book's 5
    expected = simulate_transactions(cli_config, scenario=DriftScenario("new-fraud-pattern", start_day=D))
    np.testing.assert_array_equal(written["amount"], expected["TX_AMOUNT"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--scenario", "foo"], "error: --scenario: unknown scenario 'foo'; choose none, new-fraud-pattern, cov"),
        (["--scenario", "covariate-shift", "--drift-start", "500"], "error: --drift-start: must be in [1, 24), got"),
        (["--drift-start", "soon"], "error: --drift-start: 'soon' is neither a day number nor an ISO date"),
    ],
)
def test_cli_refuses_a_bad_scenario_before_any_work(options: list[str], message: str, tmp_path: Path) -> None:
    out = tmp_path / "sim.parquet"
    result = CliRunner().invoke(app, ["simulate", "fraud", "-o", str(out), "--days", "24", *options])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(message)
    assert not out.exists()


def test_cli_help_explains_every_scenario() -> None:
    assert tuple(SCENARIO_HELP) == SCENARIOS
    result = CliRunner().invoke(app, ["simulate", "fraud", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name, text in SCENARIO_HELP.items():
        assert f"{name}: {text}" in result.output
    assert "--drift-start" in result.output
