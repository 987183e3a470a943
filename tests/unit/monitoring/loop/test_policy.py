"""The policy file: the shipped default loads and equals the coded defaults; every bad value or key is one line that
names the file, the dotted key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.loop.policy import Policy, load_policy, parse_policy


def test_the_shipped_default_is_the_coded_default_and_round_trips() -> None:
    policy = load_policy()
    assert policy == Policy()
    assert policy.model.name == "fraud" and policy.triggers.drift.kinds == (
        "FEATURE_DRIFT",
        "SCORE_DRIFT",
        "ERROR_RATE",
    )
    assert policy.retention_days == 21.0
    assert Policy.model_validate(policy.to_dict()) == policy  # to_dict is plain JSON values that validate back
    assert policy.to_dict()["promotion"]["shadow"]["min_labels"] == 10_000


def test_a_file_sets_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[triggers]\nschedule_days = 30\n[promotion.shadow]\nmetric = "card_precision_at_100"\n')
    policy = load_policy(path)
    assert policy.triggers.schedule_days == 30.0 and policy.promotion.shadow.metric == "card_precision_at_100"
    assert policy.triggers.cooldown_days == Policy().triggers.cooldown_days
    with pytest.raises(ValidationError, match="frozen"):  # read once, shared: nobody changes it
        policy.triggers.__setattr__("schedule_days", 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[promotion.shadow]\nmin_labels = 0", "promotion.shadow.min_labels must be an integer >= 1, got 0"),
        ("[triggers.drfit]\nmin_alarms = 1", "unknown key triggers.drfit (did you mean drift?)"),
        ("modle = 1", "unknown key modle (did you mean model?)"),
        (
            "[rollback]\nzzz = 1",
            "unknown key rollback.zzz (known keys: margin, max_days, metric, min_labels, min_positives)",
        ),
        ("[retrain]\nrounds = 0", "retrain.rounds must be an integer >= 1, got 0"),
        ("[promotion.shadow]\nmin_labels = 2.0", "promotion.shadow.min_labels must be an integer >= 1, got 2.0"),
        ("[triggers]\ncooldown_days = '7'", "triggers.cooldown_days must be a number >= 0, got '7'"),
        ("[triggers]\ncooldown_days = nan", "triggers.cooldown_days must be a number >= 0, got nan"),
        ("[retrain]\nwindow_days = 0", "retrain.window_days must be a number > 0, got 0"),
        ("[rollback]\nmargin = 2.0", "rollback.margin must be a number in [0, 1], got 2.0"),
        ("[promotion.offline]\nmargin = -3", "promotion.offline.margin must be a number in [-1, 1], got -3"),
        (
            "[promotion.shadow]\nmax_flip_rate = 1.5",
            "promotion.shadow.max_flip_rate must be a number in [0, 1], got 1.5",
        ),
        (
            '[promotion.offline]\nmetric = "auc"',
            "promotion.offline.metric must be one of average_precision, card_precision_at_100, got 'auc'",
        ),
        (
            '[triggers.drift]\nkinds = ["FEATURE_DRIFT", "X"]',
            "triggers.drift.kinds[1] must be one of FEATURE_DRIFT, SCORE_DRIFT, ERROR_RATE, FLIP_RATE, got 'X'",
        ),
        (
            '[triggers.drift]\nkinds = "X"',
            "triggers.drift.kinds must be a list of FEATURE_DRIFT, SCORE_DRIFT, ERROR_RATE, FLIP_RATE, got 'X'",
        ),
        ("[triggers.performance]\nenabled = 1", "triggers.performance.enabled must be true or false, got 1"),
        ('[model]\nname = ""', "model.name must be a non-empty string, got ''"),
        ("[retrain.params]\nx = [1]", "retrain.params.x must be a number, a string or a boolean, got [1]"),
        ("triggers = 3", "triggers must be a table, got 3"),
    ],
)
def test_each_error_is_one_line_naming_file_key_and_value(text: str, message: str) -> None:
    with pytest.raises(MonitoringError) as caught:
        parse_policy(text, "policy.toml")
    assert str(caught.value) == f"policy.toml: {message}"


def test_every_problem_of_a_file_is_reported_one_a_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[triggers.drfit]\n[rollback]\nmin_labels = 0\nmargin = -1\n")
    with pytest.raises(MonitoringError) as caught:
        load_policy(path)
    assert str(caught.value).splitlines() == [
        f"{path}: unknown key triggers.drfit (did you mean drift?)",
        f"{path}: rollback.min_labels must be an integer >= 1, got 0",
        f"{path}: rollback.margin must be a number in [0, 1], got -1",
    ]


def test_unreadable_or_malformed_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(MonitoringError, match=rf"^{missing}: cannot read the policy: .*No such file"):
        load_policy(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[triggers\n")
    with pytest.raises(MonitoringError, match=rf"^{bad}: not valid TOML: "):
        load_policy(bad)
