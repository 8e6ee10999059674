"""The ``intake`` command line (DESIGN §5)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.console import Console

from intake.client import client_app
from intake.keys_cli import identities_app, keys_app
from intake.units_cli import obligations_app, units_app
from wiring.logs import configure_logging
from wiring.settings import Settings

if TYPE_CHECKING:
    from consumers.service import ConsumerService as Consumer
    from schemas.catalogue import Catalogue
    from wiring.metrics import ConsumerName
    from wiring.runtime import Runtime


app = typer.Typer(no_args_is_help=True, help="register-intake: the KPR/NPR reporting receiver.")
consume_app = typer.Typer(no_args_is_help=True, help="Run consumer services on their own.")
app.add_typer(consume_app, name="consume")
schemas_app = typer.Typer(no_args_is_help=True, help="The published message models.")
app.add_typer(schemas_app, name="schemas")
codelists_app = typer.Typer(no_args_is_help=True, help="Code lists used by validation.")
app.add_typer(codelists_app, name="codelists")
app.add_typer(client_app, name="client")
app.add_typer(keys_app, name="keys")
app.add_typer(identities_app, name="identities")
app.add_typer(units_app, name="units")
app.add_typer(obligations_app, name="obligations")
ModelsRoot = Annotated[
    Path | None,
    typer.Option("--root", help="A models folder to use instead of the published one."),
]
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives (default ./.intake).")
]
MetricsHost = Annotated[str, typer.Option(help="Address to serve metrics on.")]
MetricsPort = Annotated[
    int | None, typer.Option(help="Serve Prometheus metrics on this port (any path).")
]


def _wide_console() -> Console:
    """Tables keep their columns whole when printed to a pipe or a file."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _settings(data_dir: Path | None) -> Settings:
    if data_dir is not None:
        return Settings(data_dir=data_dir)
    return Settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Run the gateway and all consumers in one process."""
    _run_gateway(_settings(data_dir), host, port, run_consumers=True)


@app.command()
def gateway(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Run the HTTP gateway only (consumers run with `intake consume`)."""
    _run_gateway(_settings(data_dir), host, port, run_consumers=False)


def _run_gateway(settings: Settings, host: str, port: int, *, run_consumers: bool) -> None:
    from receiver.app import create_app

    configure_logging()
    err.print(f"register-intake listening on http://{host}:{port}  (data: {settings.data_dir})")
    err.print(f"Review of rejected items: http://{host}:{port}/review")
    if settings.uses_dev_issuer:
        data = f" --data-dir {settings.data_dir}" if settings.data_dir != Path(".intake") else ""
        err.print(f"Get a token:  intake dev-token --orgnr 974152533{data}")
        err.print(
            f"A reviewer's: intake dev-token --orgnr 974152533 --scope intake:review "
            f"--subject <name>{data}"
        )
    uvicorn.run(
        create_app(settings, run_consumers=run_consumers),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )


def _consume(
    settings: Settings,
    name: ConsumerName,
    make: Callable[[Runtime], Consumer],
    metrics_host: str,
    metrics_port: int | None,
) -> None:
    """Run one consumer service until SIGINT or SIGTERM (it finishes the batch in flight),
    serving its metrics on ``metrics_port`` if given."""
    from prometheus_client import CollectorRegistry

    from consumers.service import EXIT_STOPPED, ConsumerStopped
    from wiring.metrics import serve_metrics
    from wiring.runtime import open_runtime, settle_heap

    configure_logging()
    registry = CollectorRegistry()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(settings, registry, wait_for_log_until=stop) as runtime:
            if stop.is_set():
                return  # stopped while waiting for the log
            settle_heap()
            consumer = make(runtime)
            runtime.metrics.watch_consumer(name, consumer)
            stop_metrics = (
                serve_metrics(registry, metrics_host, metrics_port) if metrics_port else None
            )
            try:
                await consumer.run(stop)
            finally:
                if stop_metrics is not None:
                    stop_metrics()

    try:
        asyncio.run(main())
    except ConsumerStopped as exc:
        err.print(f"[red]{name} stopped: {exc}[/]")
        raise typer.Exit(EXIT_STOPPED) from None


@consume_app.command("projector")
def consume_projector(
    data_dir: DataDir = None,
    metrics_host: MetricsHost = "127.0.0.1",
    metrics_port: MetricsPort = None,
) -> None:
    """Apply accepted events to the state store."""
    from consumers.projector import Projector

    _consume(_settings(data_dir), "projector", Projector, metrics_host, metrics_port)


@consume_app.command("quarantine")
def consume_quarantine(
    data_dir: DataDir = None,
    metrics_host: MetricsHost = "127.0.0.1",
    metrics_port: MetricsPort = None,
) -> None:
    """Index rejected items from the quarantine topic for the review UI."""
    from consumers.quarantine import QuarantineIndexer

    _consume(_settings(data_dir), "quarantine", QuarantineIndexer, metrics_host, metrics_port)


@consume_app.command("receipts")
def consume_receipts(
    data_dir: DataDir = None,
    metrics_host: MetricsHost = "127.0.0.1",
    metrics_port: MetricsPort = None,
) -> None:
    """Push receipt changes to the units' webhooks."""
    from consumers.webhooks import WebhookDispatcher
    from statestore.webhooks import WebhookRepository

    _consume(
        _settings(data_dir),
        "webhooks",
        lambda runtime: WebhookDispatcher(runtime, WebhookRepository(runtime.engines)),
        metrics_host,
        metrics_port,
    )


@app.command("dev-token")
def dev_token(
    orgnr: Annotated[str, typer.Option(help="Organisation number of the reporting unit.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Scope(s): intake:report, intake:review, intake:state, intake:admin."),
    ] = None,
    supplier: Annotated[str | None, typer.Option(help="Vendor's organisation number.")] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds the token is valid.")] = 3600,
    dpop_jkt: Annotated[
        str | None, typer.Option(help="Bind the token to this DPoP key (its RFC 7638 thumbprint).")
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="The person acting (sub claim), e.g. a reviewer's user name."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Print an access token from the local development issuer."""
    from receiver.auth import DevIssuer

    settings = _settings(data_dir)
    if not settings.uses_dev_issuer:
        err.print("[red]A real issuer is configured (INTAKE_AUTH_ISSUER); dev tokens are off.[/]")
        raise typer.Exit(2)
    if not (len(orgnr) == 9 and orgnr.isdigit()):
        err.print("[red]--orgnr must be a 9-digit organisation number.[/]")
        raise typer.Exit(2)
    issuer = DevIssuer.load_or_create(settings)
    typer.echo(
        issuer.mint(
            orgnr,
            scopes=scope or ["intake:report"],
            supplier=supplier,
            lifetime_seconds=lifetime,
            dpop_jkt=dpop_jkt,
            subject=subject,
        )
    )


def _catalogue(root: Path | None) -> Catalogue:
    from schemas.catalogue import load_catalogue, load_catalogue_from

    return load_catalogue() if root is None else load_catalogue_from(root)


@schemas_app.command("list")
def schemas_list(root: ModelsRoot = None) -> None:
    """List message types and versions with their status and promise."""
    from rich.table import Table

    table = Table(
        "type", "version", "status", "sunset", "compatibility", "item arrays", "code lists"
    )
    for model in _catalogue(root):
        table.add_row(
            model.message_type,
            str(model.version),
            model.status,
            model.sunset.isoformat() if model.sunset else "",
            model.compatibility,
            ", ".join(s.array_field for s in model.item_specs),
            ", ".join(sorted({b["codelist"] for b in model.codelist_bindings})),
        )
    _wide_console().print(table)


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Folder to write into.")],
    root: ModelsRoot = None,
) -> None:
    """Write every model's Avro schema, JSON Schema, event schema and examples to a folder, and
    every wire schema (events, envelopes) to wire/<full name>.avsc."""
    import orjson

    from schemas.wire import event_schema

    def write(path: Path, data: object) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")

    catalogue = _catalogue(root)
    for wire in catalogue.wire_schemas():  # what values on the topics are written with
        write(out / "wire" / f"{wire.name}.avsc", wire.codec.schema)
    for model in catalogue:
        folder = out / model.message_type / str(model.version)
        write(folder / "schema.avsc", model.schema)
        write(folder / "schema.json", model.json_schema)
        write(folder / "event.avsc", event_schema(model.message_type, model.version, model.schema))
        for example in model.examples:
            kind = "valid" if example.valid else "invalid"
            write(folder / "examples" / kind / f"{example.name}.json", example.message)
            if example.expected:
                write(
                    folder / "examples" / kind / f"{example.name}.expected.json", example.expected
                )
    err.print(f"exported to {out}")


@schemas_app.command("check")
def schemas_check(root: ModelsRoot = None) -> None:
    """Refuse a new version that breaks the compatibility its type promises."""
    from schemas.compatibility import check_catalogue

    catalogue = _catalogue(root)
    problems = check_catalogue(catalogue)
    for problem in problems:
        err.print(f"[red]incompatible[/] {problem}")
    if problems:
        raise typer.Exit(1)
    err.print(f"{len(list(catalogue))} model versions checked: compatible")


@codelists_app.command("import")
def codelists_import(
    path: Annotated[
        Path, typer.Argument(help="The file: RF2 simple refset, TSV, JSON or KLASS codes JSON.")
    ],
    file_format: Annotated[
        str,
        typer.Option("--format", help="rf2, tsv, json or klass (default: from the file name)."),
    ] = "",
    codelist_id: Annotated[
        str | None, typer.Option("--id", help="The code list's id (rf2, tsv and klass).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="A title (rf2, tsv and klass).")] = None,
    changes: Annotated[
        Path | None,
        typer.Option(
            help="klass: the classification's changes (KLASS /changes JSON), to map old codes."
        ),
    ] = None,
    sample: Annotated[bool, typer.Option(help="Mark the list as a sample.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Import a code list into the store; running servers pick it up within a minute."""
    from statestore import migrate as store_migrate
    from statestore.codelists import CodeListRepository
    from statestore.engine import create_engines
    from validators.codelists import CodeListFormatError, parse_json, parse_rf2, parse_tsv
    from validators.klass import parse_klass

    settings = _settings(data_dir)
    fmt = file_format or (
        "json" if path.suffix == ".json" else "tsv" if path.suffix == ".tsv" else "rf2"
    )
    text = path.read_text(encoding="utf-8")
    try:
        if fmt == "json":
            codelist = parse_json(text, source=path.name)
        elif fmt == "klass":
            if not codelist_id:
                err.print("[red]--id is required for klass files (e.g. kommunenummer).[/]")
                raise typer.Exit(2)
            codelist = parse_klass(
                text,
                changes.read_text(encoding="utf-8") if changes else None,
                codelist_id=codelist_id,
                title=title or codelist_id,
                sample=sample,
                source=path.name,
            )
        elif fmt in ("rf2", "tsv"):
            if not codelist_id:
                err.print("[red]--id is required for rf2 and tsv files.[/]")
                raise typer.Exit(2)
            parse = parse_rf2 if fmt == "rf2" else parse_tsv
            codelist = parse(
                text,
                codelist_id=codelist_id,
                title=title or codelist_id,
                sample=sample,
                source=path.name,
            )
        else:
            err.print(f"[red]Unknown format {fmt!r}; use rf2, tsv, json or klass.[/]")
            raise typer.Exit(2)
    except CodeListFormatError as exc:
        err.print(f"[red]{path}: {exc}[/]")
        raise typer.Exit(1) from exc

    async def save() -> None:
        if settings.auto_migrate:
            await store_migrate.upgrade(settings.resolved_database_url)
        engines = create_engines(settings.resolved_database_url)
        try:
            await CodeListRepository(engines).save(codelist)
        finally:
            await engines.dispose()

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(save())
    versions = ", ".join(v.isoformat() for v in codelist.versions)
    err.print(f"imported {codelist.id}: {len(codelist.states)} member states, versions {versions}")
    if codelist.changes:
        err.print(f"  and {len(codelist.changes)} changes between versions")


@codelists_app.command("list")
def codelists_list(data_dir: DataDir = None) -> None:
    """List the code lists validation uses (imported ones override the shipped samples)."""
    from rich.table import Table

    from statestore import migrate as store_migrate
    from statestore.codelists import CodeListRepository
    from statestore.engine import create_engines
    from validators.codelists import CodeListRegistry, load_samples

    settings = _settings(data_dir)

    async def load() -> CodeListRegistry:
        if settings.auto_migrate:
            await store_migrate.upgrade(settings.resolved_database_url)
        engines = create_engines(settings.resolved_database_url)
        try:
            imported = await CodeListRepository(engines).load_all()
        finally:
            await engines.dispose()
        return CodeListRegistry(load_samples()).with_lists(imported)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    table = Table("id", "title", "sample", "versions", "members now", "source")
    for codelist in asyncio.run(load()):
        latest = codelist.versions[-1] if codelist.versions else None
        active = [s for s in codelist.members_on(latest) if s.active] if latest else []
        table.add_row(
            codelist.id,
            codelist.title,
            "yes" if codelist.sample else "no",
            ", ".join(v.isoformat() for v in codelist.versions),
            str(len(active)),
            codelist.source,
        )
    _wide_console().print(table)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Bring the state store's schema to the newest version."""
    from statestore.migrate import upgrade

    settings = _settings(data_dir)
    asyncio.run(upgrade(settings.resolved_database_url))
    err.print("store schema is up to date")


@app.command()
def replay(
    unit: Annotated[str | None, typer.Option(help="Reporting unit (organisation number).")] = None,
    vendor: Annotated[str | None, typer.Option(help="Vendor, as sent in x-vendor-name.")] = None,
    message_type: Annotated[str | None, typer.Option(help="e.g. HST_Avtale.")] = None,
    version: Annotated[int | None, typer.Option(help="Model version.")] = None,
    rule_id: Annotated[str | None, typer.Option(help="Items with a finding of this rule.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Review status, e.g. new or awaiting_resubmission.")
    ] = None,
    day_from: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD).")] = None,
    day_to: Annotated[str | None, typer.Option("--to", help="Last day (YYYY-MM-DD).")] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Publish the items that pass (default: only show).")
    ] = False,
    actor: Annotated[
        str, typer.Option(help="Who replays, for the review history and access log.")
    ] = "cli",
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many items, oldest first (default: every item).", min=1),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Re-validate quarantined items with today's rules and code lists; with --apply, publish
    those that now pass (their senders' receipts are updated)."""
    from rich.table import Table

    from eventlog.port import LogUnavailableError
    from review.errors import InvalidQuery
    from review.replay import (
        REPLAY_CHUNK,
        REPLAY_LATER,
        ReplayCheck,
        ReplayService,
        verdict_summary,
    )
    from review.views import read_filter
    from statestore.review import ReviewRepository
    from wiring.runtime import open_runtime

    query = {
        "unit": unit,
        "vendor": vendor,
        "message_type": message_type,
        "version": str(version) if version is not None else None,
        "rule_id": rule_id,
        "status": status,
        "from": day_from,
        "to": day_to,
    }
    try:
        flt = read_filter({k: v for k, v in query.items() if v is not None})
    except InvalidQuery as problem:
        err.print(f"[red]{problem.detail}[/]")
        raise typer.Exit(2) from None
    settings = _settings(data_dir)

    async def run() -> tuple[list[ReplayCheck], int]:
        """Every item of the filter (or the first ``limit``), in chunks; and the filter's size."""
        async with open_runtime(settings) as runtime:
            review = ReviewRepository(runtime.engines)
            service = ReplayService(runtime, review)
            total = await review.count(flt)
            # The ids first: a replayed item may leave the filter (its status changes).
            ids = await review.ids(flt, total if limit is None else min(limit, total))
            checks: list[ReplayCheck] = []
            for start in range(0, len(ids), REPLAY_CHUNK):
                chunk = ids[start : start + REPLAY_CHUNK]
                if apply:
                    checks += (await service.replay(chunk, f"cli:{actor}", "cli-replay")).checks
                else:
                    checks += await service.check(chunk)
            return checks, total

    try:
        checks, total = asyncio.run(run())
    except LogUnavailableError as exc:
        err.print(f"[red]The event log is not available ({exc}). {REPLAY_LATER}[/]")
        raise typer.Exit(1) from None
    table = Table("item", "message type", "verdict", "findings now")
    for c in checks:
        rule_ids = " ".join(sorted({f["rule_id"] for f in c.findings}))
        table.add_row(c.row.item_id, c.row.message_type, c.verdict, rule_ids)
    _wide_console().print(table)
    counts = verdict_summary(checks)["counts"]
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())) or "no items"
    err.print(f"{'published' if apply else 'would publish'}: {counts.get('passes', 0)} ({summary})")
    if len(checks) < total:
        err.print(f"{len(checks)} of the {total} items in the filter; {total - len(checks)} left")


def main() -> None:
    app()
