"""Our top-level package names are generic; no dependency may install a module of the same name,
and the distribution ships its schemas, rules and migrations."""

from __future__ import annotations

from importlib import metadata, resources

OUR_PACKAGES = {
    "intake",
    "receiver",
    "validators",
    "schemas",
    "consumers",
    "eventlog",
    "statestore",
}


def _top_level_names(dist: metadata.Distribution) -> set[str]:
    names: set[str] = set()
    top_level = dist.read_text("top_level.txt")
    if top_level:
        names.update(line.strip() for line in top_level.splitlines() if line.strip())
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] == "..":
            continue
        first = parts[0]
        names.add(first.removesuffix(".py") if len(parts) == 1 else first)
    return names


def test_no_dependency_installs_a_module_named_like_ours() -> None:
    clashes = {}
    for dist in metadata.distributions():
        if dist.metadata["Name"] == "register-intake":
            continue
        overlap = _top_level_names(dist) & OUR_PACKAGES
        if overlap:
            clashes[dist.metadata["Name"]] = sorted(overlap)
    assert clashes == {}


def test_data_files_ship_with_the_packages() -> None:
    assert resources.files("validators").joinpath("rules.toml").is_file()
    assert resources.files("schemas").joinpath("envelopes", "quarantine.avsc").is_file()
    assert resources.files("schemas").joinpath("models", "HST_Avtale", "1", "schema.avsc").is_file()
    assert resources.files("statestore").joinpath("migrations", "env.py").is_file()


def test_console_script_is_declared() -> None:
    [script] = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "intake"]
    assert script.value == "intake.cli:main"
