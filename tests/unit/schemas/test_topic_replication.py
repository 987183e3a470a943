"""How many replicas a new topic gets, and the min.insync.replicas that goes with them."""

from __future__ import annotations

import pytest

from slipstream.schemas.transport.admin import durability_config, replication_factor_for


@pytest.mark.parametrize(("brokers", "replicas"), [(0, 1), (1, 1), (2, 2), (3, 3), (5, 3)])
def test_replication_factor_is_min_three_brokers(brokers: int, replicas: int) -> None:
    assert replication_factor_for(brokers) == replicas


def test_three_replicas_need_two_in_sync() -> None:
    assert durability_config(3) == {"min.insync.replicas": "2"}
    assert durability_config(4) == {"min.insync.replicas": "2"}


@pytest.mark.parametrize("replicas", [0, 1, 2])
def test_fewer_replicas_keep_the_broker_default(replicas: int) -> None:
    assert durability_config(replicas) == {}
