"""``intake units``: the directory of reporting units, from Enhetsregisteret's bulk files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

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
