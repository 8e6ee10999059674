"""``intake units``: the directory of reporting units, from Enhetsregisteret's bulk files; and
``intake obligations``: who must report which message types from when."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from wiring.settings import Settings

units_app = typer.Typer(no_args_is_help=True, help="The directory of reporting units.")
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives (default ./.intake).")
]


@units_app.command("import")
def import_units(
    path: Annotated[
        Path,
        typer.Argument(
            help="A bulk file of Enhetsregisteret (enheter_alle.json[.gz] or "
            "underenheter_alle.json[.gz], from data.brreg.no)."
        ),
    ],
    industry: Annotated[
        str,
        typer.Option(
            help="Keep only units whose industry code starts with one of these "
            "(comma-separated, e.g. 86,87,88 for health and social work); default all."
        ),
    ] = "",
    data_dir: DataDir = None,
) -> None:
    """Replace the directory's main units or sub-units (whichever the file holds) with the
    file's; a file in the wrong shape is refused, naming the line and field, and nothing of it
    is stored."""
    from statestore import migrate as store_migrate
    from statestore.engine import create_engines
    from statestore.enhetsregisteret import UnitFileError, parse_units, read_file
    from statestore.units import UnitDirectory

    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    prefixes = tuple(p.strip() for p in industry.split(",") if p.strip())
    try:
        units = parse_units(read_file(path), industry_prefixes=prefixes)
    except (UnitFileError, UnicodeDecodeError, OSError) as exc:
        err.print(f"[red]{path}: {exc}[/]")
        raise typer.Exit(1) from None

    async def save() -> int:
        if settings.auto_migrate:
            await store_migrate.upgrade(settings.resolved_database_url)
        engines = create_engines(settings.resolved_database_url)
        try:
            return await UnitDirectory(engines).replace(units)
        finally:
            await engines.dispose()

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stored = asyncio.run(save())
    kinds = ", ".join(sorted({u.kind for u in units})) or "none"
    err.print(f"imported {stored} units ({kinds}) from {path.name}")


obligations_app = typer.Typer(
    no_args_is_help=True, help="Reporting obligations: who must report what from when."
)


def _repository_call(data_dir: Path | None, call: Any) -> Any:
    from statestore import migrate as store_migrate
    from statestore.engine import create_engines
    from statestore.obligations import ObligationRepository

    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()

    async def run() -> Any:
        if settings.auto_migrate:
            await store_migrate.upgrade(settings.resolved_database_url)
        engines = create_engines(settings.resolved_database_url)
        try:
            return await call(ObligationRepository(engines))
        finally:
            await engines.dispose()

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run())


@obligations_app.command("add")
def add_obligation(
    unit: Annotated[str, typer.Option(help="The unit that must report (organisation number).")],
    message_type: Annotated[str, typer.Option(help="e.g. HST_Avtale.")],
    valid_from: Annotated[str, typer.Option("--from", help="First day (yyyy-mm-dd).")],
    valid_to: Annotated[
        str | None, typer.Option("--to", help="Last day (yyyy-mm-dd); default open.")
    ] = None,
    kommune: Annotated[
        str | None, typer.Option(help="The municipality it reports for (4 digits).")
    ] = None,
    replaces: Annotated[int | None, typer.Option(help="An obligation this one ends.")] = None,
    actor: Annotated[str, typer.Option(help="Who records it.")] = "cli",
    data_dir: DataDir = None,
) -> None:
    """Record that a unit must report a message type from a day (kept with its history)."""
    from schemas.catalogue import load_catalogue
    from validators.identifiers import check_orgnr

    try:
        first = date.fromisoformat(valid_from)
        last = date.fromisoformat(valid_to) if valid_to else None
    except ValueError:
        err.print("[red]--from and --to are dates (yyyy-mm-dd).[/]")
        raise typer.Exit(2) from None
    problems = []
    if check_orgnr(unit) is not None:
        problems.append(f"--unit {unit} is not an organisation number")
    if message_type not in {m.message_type for m in load_catalogue()}:
        problems.append(f"--message-type {message_type} is no published model")
    if kommune is not None and not (len(kommune) == 4 and kommune.isdigit()):
        problems.append("--kommune is four digits")
    if last is not None and last < first:
        problems.append("--to is before --from")
    if problems:
        err.print("[red]" + "; ".join(problems) + "[/]")
        raise typer.Exit(2)
    added = _repository_call(
        data_dir,
        lambda repo: repo.add(
            unit, message_type, first, valid_to=last, kommune_nr=kommune, actor=actor,
            replaces=replaces,
        ),
    )  # fmt: skip
    err.print(f"obligation {added.id}: {unit} reports {message_type} from {first}")


@obligations_app.command("end")
def end_obligation(
    obligation_id: Annotated[int, typer.Argument(help="The obligation's id.")],
    actor: Annotated[str, typer.Option(help="Who ends it.")] = "cli",
    data_dir: DataDir = None,
) -> None:
    """End an obligation (it stays in the history)."""
    if not _repository_call(data_dir, lambda repo: repo.end(obligation_id, actor)):
        err.print(f"[red]no open obligation {obligation_id}[/]")
        raise typer.Exit(1)
    err.print(f"obligation {obligation_id} ended")


@obligations_app.command("list")
def list_obligations(
    message_type: Annotated[str | None, typer.Option(help="Only this message type.")] = None,
    history: Annotated[bool, typer.Option(help="Also the ended ones.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The obligations in force (or every one, with --history)."""
    from rich.table import Table

    found = _repository_call(
        data_dir, lambda repo: repo.find(message_type=message_type, include_ended=history)
    )
    table = Table("id", "unit", "municipality", "message type", "from", "to", "recorded", "ended")
    for o in found:
        recorded = f"{o.recorded_at:%Y-%m-%d} {o.recorded_by}"
        ended = f"{o.ended_at:%Y-%m-%d} {o.ended_by}" if o.ended_at else ""
        last = o.valid_to.isoformat() if o.valid_to else ""
        table.add_row(
            str(o.id), o.unit, o.kommune_nr or "", o.message_type, o.valid_from.isoformat(),
            last, recorded, ended,
        )  # fmt: skip
    Console().print(table)
