"""`slipstream dead-letters list | show | redrive`: see what processors gave up on, send it again after a fix."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from slipstream.app import Slipstream
from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.options import check_number
from slipstream.exceptions import InputError
from slipstream.schemas.dead_letter import DEAD_LETTER_TOPIC, ERROR_TYPES, QUARANTINE_TOPIC
from slipstream.schemas.dead_letter_filters import (
    Counts,
    Letter,
    LetterFilter,
    count,
    hexdump,
    letter_json,
    make_filter,
    parse_coordinate,
)
from slipstream.schemas.exceptions import DeadLetterError, DecodeError, SlipstreamError, TopicError
from slipstream.schemas.transport.redrive import (
    RedriveReport,
    find_dead_letter,
    list_dead_letters,
    redrive,
)

dead_letters_app = typer.Typer(
    help=(
        "Dead letters: list and filter them, show one with its original decoded, and re-drive them to their original"
        " topics after a fix — each envelope at most once, across runs and concurrent invocations. A re-driven event"
        " that fails again goes to dead-letter-quarantine and is re-driven only when asked (--from-quarantine)."
    ),
    no_args_is_help=True,
)

Prefix = Annotated[
    str | None, typer.Option(help="Namespace prepended to every topic name.", envvar="SLIPSTREAM_TOPIC_PREFIX")
]
Reason = Annotated[str | None, typer.Option(help="Only reasons containing this text (case-insensitive).")]
ReasonRegex = Annotated[str | None, typer.Option(help="Only reasons matching this regular expression (re.search).")]
ErrorType = Annotated[
    list[str] | None,
    typer.Option("--error-type", "-e", help=f"Only this error type (repeatable): {', '.join(ERROR_TYPES)}."),
]
Processor = Annotated[
    list[str] | None, typer.Option("--processor", "-p", help="Only envelopes written by this processor (repeatable).")
]
SourceTopic = Annotated[
    list[str] | None,
    typer.Option("--topic", "-t", help="Only originals from this topic, logical name e.g. transactions (repeatable)."),
]
Since = Annotated[
    str | None,
    typer.Option(help="Only failures at or after this time: ISO-8601 with a timezone, or relative (30m, 2h, 7d)."),
]
Until = Annotated[str | None, typer.Option(help="Only failures at or before this time (same forms as --since).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]


def _filter(
    app: Slipstream,
    *,
    reason: str | None,
    reason_regex: str | None,
    error_type: list[str] | None,
    processor: list[str] | None,
    topic: list[str] | None,
    since: str | None,
    until: str | None,
    ids: list[str] | None = None,
) -> LetterFilter:
    """The filter from the options, every value checked before any work: a bad one is an :class:`InputError`."""
    try:
        topics = []
        for name in topic or ():
            try:
                topics.append(app.contracts.topic(name))
            except TopicError as exc:
                msg = f"--topic: {exc}"
                raise InputError(msg) from exc
        return make_filter(
            now=datetime.now(UTC),
            reason=reason,
            reason_regex=reason_regex,
            error_types=error_type or (),
            processors=processor or (),
            source_topics=topics,
            since=since,
            until=until,
            ids=ids or (),
        )
    except DeadLetterError as exc:
        raise InputError(str(exc)) from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _dump(data: Any) -> None:
    print(orjson.dumps(data, default=_jsonable, option=orjson.OPT_INDENT_2).decode())


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _counts_json(counts: Counts) -> dict[str, Any]:
    return {"total": counts.total, "by_error_type": counts.by_error_type, "by_processor": counts.by_processor}


def _letters_table(title: str, letters: list[Letter], reason_width: int = 70) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("id", "failed_at", "source", "processor", "error_type", "reason"):
        table.add_column(name, no_wrap=True, overflow="ellipsis" if name == "reason" else "fold")
    for letter in letters:
        marked = letter.quarantined and letter.topic != QUARANTINE_TOPIC  # a re-driven original, not routed there
        table.add_row(
            letter.id + (" [yellow](re-driven before)[/yellow]" if marked else ""),
            letter.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(letter.source),
            escape(letter.processor),
            escape(letter.error_type),
            escape(_cut(letter.reason, reason_width)),
        )
    return table


def _print_counts(counts: Counts) -> None:
    by_type = ", ".join(f"{name} {n:,}" for name, n in counts.by_error_type.items()) or "none"
    by_processor = ", ".join(f"{name} {n:,}" for name, n in counts.by_processor.items()) or "none"
    out.print(f"[bold]{counts.total:,}[/bold] envelopes — by error type: {escape(by_type)}")
    out.print(f"by processor: {escape(by_processor)}")


@dead_letters_app.command("list")
def list_command(
    reason: Reason = None,
    reason_regex: ReasonRegex = None,
    error_type: ErrorType = None,
    processor: Processor = None,
    topic: SourceTopic = None,
    since: Since = None,
    until: Until = None,
    quarantine: Annotated[
        bool, typer.Option("--quarantine", help="List dead-letter-quarantine (re-driven events that failed again).")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Show at most this many rows (the counts cover all).")] = None,
    as_json: AsJson = False,
    prefix: Prefix = None,
) -> None:
    """The envelopes of the namespace's dead-letter topic that match every filter given, oldest failure first, with
    counts by error type and processor.

    The id of an envelope is its partition:offset in the dead-letter topic (what `show` and `redrive` take).
    """
    with friendly_errors():
        if limit is not None:
            check_number(limit, "--limit", ge=0)
        app = build(topic_prefix=prefix)
        where = _filter(
            app,
            reason=reason,
            reason_regex=reason_regex,
            error_type=error_type,
            processor=processor,
            topic=topic,
            since=since,
            until=until,
        )
        listing = list_dead_letters(app.kafka, app.contracts, where, quarantine=quarantine)
        counts = count(listing.letters)
        shown = listing.letters if limit is None else listing.letters[:limit]
        full = app.contracts.topic(listing.topic)
        if as_json:
            _dump(
                {
                    "topic": full,
                    "counts": _counts_json(counts),
                    "unreadable": listing.unreadable,
                    "letters": [letter_json(x) for x in shown],
                }
            )
            return
        if shown:
            out.print(_letters_table(f"{full}: {len(shown):,} of {counts.total:,} matching", shown))
        _print_counts(counts)
        if listing.unreadable:
            console.print(f"[yellow]{listing.unreadable} records of {full} are no DeadLetter envelope[/yellow]")


def _original(app: Slipstream, letter: Letter) -> dict[str, Any]:
    """The original decoded with today's contracts, or why it does not decode and its first bytes."""
    value = letter.record.get("original_value")
    try:
        serde = app.contracts.serde(letter.source_topic)
    except SlipstreamError as exc:
        return {"decoded": None, "error": f"no contract to decode it with: {exc}", "hexdump": hexdump(value or b"")}
    try:
        return {"decoded": serde.decode(value), "error": None}
    except DecodeError as exc:
        return {"decoded": None, "error": f"{exc.error_type}: {exc}", "hexdump": hexdump(value or b"")}


@dead_letters_app.command("show")
def show(
    envelope_id: Annotated[str, typer.Argument(metavar="ID", help="The envelope's partition:offset, e.g. 2:41.")],
    quarantine: Annotated[bool, typer.Option("--quarantine", help="ID is in dead-letter-quarantine.")] = False,
    as_json: AsJson = False,
    prefix: Prefix = None,
) -> None:
    """One envelope whole, and its original decoded with today's contracts — or, if it still does not decode, why and
    a hexdump of its first bytes."""
    with friendly_errors():
        try:
            coordinate = parse_coordinate(envelope_id)
        except DeadLetterError as exc:
            raise InputError(str(exc)) from exc
        app = build(topic_prefix=prefix)
        letter = find_dead_letter(app.kafka, app.contracts, coordinate, quarantine=quarantine)
        topic = app.contracts.topic(QUARANTINE_TOPIC if quarantine else DEAD_LETTER_TOPIC)
        if letter is None:
            msg = f"no envelope at {envelope_id!r} in {topic!r}"
            raise DeadLetterError(msg)
        original = _original(app, letter)
        if as_json:
            _dump({"envelope": letter_json(letter), "original": original})
            return
        table = Table(title=f"{topic} {letter.id}", title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for name, value in letter_json(letter).items():
            if name not in ("topic", "id", "original_value_base64"):
                table.add_row(name, escape(str(value)))
        out.print(table)
        if original["decoded"] is not None:
            out.print("[green]the original decodes with today's contracts:[/green]")
            _dump(original["decoded"])
        else:
            out.print(f"[red]the original does not decode:[/red] {escape(original['error'])}")
            print(original["hexdump"])


def _report_json(report: RedriveReport) -> dict[str, Any]:
    plan = report.plan
    return {
        "redrive_id": report.redrive_id,
        "dry_run": report.dry_run,
        "redriven": len(report.redriven),
        "would_redrive": len(plan.chosen) if report.dry_run else 0,
        "skipped_already_redriven": len(plan.already),
        "refused_quarantined": len(plan.refused),
        "left_by_limit": len(plan.over_limit),
        "ids": [x.id for x in (plan.chosen if report.dry_run else report.redriven)],
        "targets": sorted({x.source_topic for x in plan.chosen}),
    }


@dead_letters_app.command("redrive")
def redrive_command(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID", help="Envelopes to re-drive, as partition:offset.")
    ] = None,
    reason: Reason = None,
    reason_regex: ReasonRegex = None,
    error_type: ErrorType = None,
    processor: Processor = None,
    topic: SourceTopic = None,
    since: Since = None,
    until: Until = None,
    every: Annotated[bool, typer.Option("--all", help="Take every envelope (needed when no ID or filter).")] = False,
    from_quarantine: Annotated[
        bool,
        typer.Option(
            "--from-quarantine",
            help="Re-drive from dead-letter-quarantine (events that failed after a re-drive); IDs are its coordinates.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be re-driven; send nothing.")] = False,
    limit: Annotated[int | None, typer.Option(help="Re-drive at most this many (oldest failures first).")] = None,
    as_json: AsJson = False,
    prefix: Prefix = None,
) -> None:
    """Send the chosen envelopes' originals (key, value, headers, timestamp; same partition) back to their topics.

    Each re-sent record carries the headers slipstream-redrive (the envelope's partition:offset),
    slipstream-redrive-from and slipstream-redrive-id. Each re-drive is recorded in the compacted topic
    dead-letter-redrives in the same Kafka transaction as the record it sent, and read before choosing: an envelope
    is never re-driven twice. A re-driven event that failed again is in dead-letter-quarantine, re-driven only with
    --from-quarantine; an envelope in dead-letter whose original was re-driven before is refused.
    """
    with friendly_errors():
        if limit is not None:
            check_number(limit, "--limit", ge=1)
        app = build(topic_prefix=prefix)
        where = _filter(
            app,
            reason=reason,
            reason_regex=reason_regex,
            error_type=error_type,
            processor=processor,
            topic=topic,
            since=since,
            until=until,
            ids=ids,
        )
        if where == LetterFilter() and not every:
            msg = "redrive: nothing chosen; give IDs, a filter (--error-type, --reason, --since, ...) or --all"
            raise InputError(msg)
        report = redrive(
            app.kafka,
            app.contracts,
            where,
            from_quarantine=from_quarantine,
            dry_run=dry_run,
            limit=limit,
        )
        if as_json:
            _dump(_report_json(report))
            return
        plan = report.plan
        sent = plan.chosen if dry_run else report.redriven
        if sent:
            verb = "would re-drive" if dry_run else "re-driven"
            out.print(_letters_table(f"{verb} ({report.redrive_id})", sent[:20], reason_width=50))
            if len(sent) > 20:
                out.print(f"… and {len(sent) - 20:,} more")
        lead = f"would re-drive {len(plan.chosen):,}" if dry_run else f"redriven {len(report.redriven):,}"
        out.print(
            f"[green]✓[/green] {lead}; skipped {len(plan.already):,} already re-driven"
            + (f"; refused {len(plan.refused):,} whose original was re-driven before" if plan.refused else "")
            + (f"; left {len(plan.over_limit):,} by --limit" if plan.over_limit else "")
        )
