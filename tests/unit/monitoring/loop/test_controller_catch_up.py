"""The loop controller when it catches up: a rollback watch opened by a promotion it read while catching up still
gets its predecessor shadowed, so when the loop went live does not change what it decides. The registry is a fake
(pure bookkeeping): the controller's Kafka reading is not involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slipstream.monitoring.loop.controller import PREVIOUS_ALIAS, LoopController

from .test_decide import policy
from .world import MODEL, day_us, model_event


class _Registry:
    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases
        self.actor = ""
        self.calls: list[tuple[str, str, str]] = []

    def alias_version(self, model: str, alias: str) -> str | None:
        return self.aliases.get(alias)

    def set_challenger(self, model: str, version: str, alias: str, producer: Any) -> None:
        self.calls.append((model, version, alias))
        self.aliases[alias] = version


def _controller(registry: _Registry, *, dry_run: bool = False) -> LoopController:
    def no_retrain(plan: Any, out: Path) -> Any:
        msg = "no retrain here"
        raise AssertionError(msg)

    loop = LoopController(
        "127.0.0.1:1",
        None,  # type: ignore[arg-type]  # never read: no Kafka here
        registry,
        object(),
        policy(),
        no_retrain,
        Path(),
        dry_run=dry_run,
        say=lambda _: None,
    )
    loop._cards.update({"1", "2"})  # the model cards count as read (they live in MLflow)
    return loop


def _history() -> list[dict[str, Any]]:
    return [
        model_event("PROMOTED", "1", stream_us=day_us(0)),
        model_event("PROMOTED", "2", previous="1", stream_us=day_us(2)),  # by hand, mid-stream: a watch opens
    ]


def test_a_watch_read_while_catching_up_shadows_its_predecessor_once_live() -> None:
    registry = _Registry({"champion": "2"})
    loop = _controller(registry)
    for record in _history():
        loop._read("model-events", record)  # not live yet: the live path does not shadow
    assert registry.calls == []
    loop._resume()  # caught up
    assert registry.calls == [(MODEL, "1", PREVIOUS_ALIAS)]
    loop._resume()  # already shadowed: nothing again
    assert registry.calls == [(MODEL, "1", PREVIOUS_ALIAS)]


def test_no_watch_or_a_dry_run_shadows_nothing() -> None:
    closed = [*_history(), model_event("ROLLED_BACK", "1", previous="2", stream_us=day_us(5))]
    for records, dry_run in ((closed, False), (_history(), True)):
        registry = _Registry({"champion": "1"})
        loop = _controller(registry, dry_run=dry_run)
        for record in records:
            loop._read("model-events", record)
        loop._resume()
        assert registry.calls == []
