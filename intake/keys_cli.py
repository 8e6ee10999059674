"""``intake keys``: the identity keyset (docs/privacy.md) — create one, rotate its encryption
key, re-seal the vault under the new key, and show which keys the vault uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from wiring.settings import Settings

keys_app = typer.Typer(no_args_is_help=True, help="The identity keyset (docs/privacy.md).")
out = Console()
err = Console(stderr=True)

KeysetPath = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="The keyset file (default: INTAKE_IDENTITY_KEYSET_FILE, else the data dir's).",
    ),
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives (default ./.intake).")
]


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _path(file: Path | None, data_dir: Path | None) -> Path:
    return file if file is not None else _settings(data_dir).resolved_identity_keyset


@keys_app.command("create")
def create(file: Annotated[Path, typer.Option("--file", help="Where to write it (0600).")]) -> None:
    """Write a new keyset (for a production secret); never replaces an existing file."""
    from identity.keys import new_keyset, write_keyset

    if not write_keyset(file, new_keyset(), exclusive=True):
        err.print(f"{file} exists; a keyset is never overwritten")
        raise typer.Exit(1)
    out.print(f"wrote {file}: encryption key e1 (primary), pseudonym key p1")


@keys_app.command("rotate")
def rotate(file: KeysetPath = None, data_dir: DataDir = None) -> None:
    """Add a new encryption key and make it primary. New writes use it within seconds; values
    sealed under older keys stay readable (re-seal them with `intake keys reencrypt`)."""
    from identity.keys import KeysetError
    from identity.keys import rotate as rotate_keyset

    path = _path(file, data_dir)
    try:
        key_id = rotate_keyset(path)
    except KeysetError as exc:
        err.print(str(exc))
        raise typer.Exit(1) from exc
    out.print(f"{path}: new primary encryption key {key_id}")


@keys_app.command("reencrypt")
def reencrypt(
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="Vault rows per transaction.")] = 1000,
) -> None:
    """Seal every vault row not under the primary key again under it, in batches (resumable:
    run it again after an interruption); prints progress."""
    from identity.keys import KeysetFile
    from statestore.engine import create_engines
    from statestore.vault import VaultRepository

    settings = _settings(data_dir)

    async def run() -> int:
        keys = KeysetFile(settings.resolved_identity_keyset)
        engines = create_engines(settings.resolved_database_url)
        try:
            vault = VaultRepository(engines)
            done = 0
            while True:
                keyset = keys.current()
                rows = await vault.not_under(keyset.primary, batch)
                if not rows:
                    return done
                done += await vault.reseal(rows, keyset)
                out.print(f"re-sealed {done} under {keyset.primary}")
        finally:
            await engines.dispose()

    total = asyncio.run(run())
    out.print(f"done: {total} vault rows re-sealed")


@keys_app.command("status")
def status(data_dir: DataDir = None) -> None:
    """The keyset's key ids and how many vault rows each encryption key sealed."""
    from identity.keys import load_keyset
    from statestore.engine import create_engines
    from statestore.vault import VaultRepository

    settings = _settings(data_dir)
    keyset = load_keyset(settings.resolved_identity_keyset)

    async def run() -> dict[str, int]:
        engines = create_engines(settings.resolved_database_url)
        try:
            return await VaultRepository(engines).keys_in_use()
        finally:
            await engines.dispose()

    used = asyncio.run(run())
    out.print(f"pseudonym key {keyset.pseudonym_id}; primary encryption key {keyset.primary}")
    for key_id in sorted(set(keyset.encryption) | set(used)):
        missing = "" if key_id in keyset.encryption else " (NOT IN THE KEYSET: unreadable)"
        out.print(f"  {key_id}: {used.get(key_id, 0)} vault rows{missing}")


identities_app = typer.Typer(
    no_args_is_help=True, help="Person identifiers in the store (docs/privacy.md)."
)


@identities_app.command("migrate")
def migrate(
    data_dir: DataDir = None,
    batch: Annotated[int, typer.Option(help="Rows per transaction.")] = 500,
) -> None:
    """Pseudonymise a store written before identifiers were: event payloads, states, versions
    and review items (and the embedded log's copy), in place, in batches. Resumable (run it
    again after an interruption) and idempotent (a finished store is left as it is); prints
    progress. Embedded: stop `intake serve` first (the files are compacted at the end)."""
    from schemas.catalogue import load_catalogue
    from statestore.engine import create_engines
    from statestore.identity_migration import IdentityMigration
    from wiring.runtime import open_identity_keys

    settings = _settings(data_dir)

    def progress(table: str, read: int, changed: int) -> None:
        out.print(f"{table}: {read} read, {changed} pseudonymised")

    async def run() -> dict[str, int]:
        from identity.pseudonyms import Pseudonymiser

        catalogue = load_catalogue()
        engines = create_engines(settings.resolved_database_url)
        try:
            identities = Pseudonymiser(open_identity_keys(settings), list(catalogue))
            migration = IdentityMigration(
                engines, identities, catalogue, batch=batch, progress=progress
            )
            report = await migration.run()
            if settings.event_log == "embedded" and settings.embedded_log_path.exists():
                await migration.run_on_embedded_log(settings.embedded_log_path, report)
            return report.changed
        finally:
            await engines.dispose()

    changed = asyncio.run(run())
    if settings.database_url is None:  # embedded: no old page may keep a number
        from statestore.identity_migration import compact_embedded

        files = [settings.data_dir / "state.sqlite3", settings.embedded_log_path]
        compact_embedded([f for f in files if f.exists()])
    out.print("done: " + ", ".join(f"{t} {n}" for t, n in changed.items()))
