"""The command line: dev tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from intake.cli import app
from receiver.auth import verifier_for
from wiring.settings import Settings

runner = CliRunner()


def test_dev_token_is_accepted_by_the_server_verifier(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "dev-token",
            "--orgnr",
            "974152533",
            "--supplier",
            "987654325",
            "--scope",
            "intake:report",
            "--scope",
            "intake:state",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    principal = verifier_for(Settings(data_dir=tmp_path)).verify(result.stdout.strip())
    assert principal.unit == "974152533"
    assert principal.supplier == "987654325"
    assert principal.scopes == {"intake:report", "intake:state"}


def test_dev_token_refuses_a_malformed_orgnr(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dev-token", "--orgnr", "12ab", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2


def test_dev_token_refuses_when_a_real_issuer_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    monkeypatch.setenv("INTAKE_AUTH_ISSUER", "https://helseid-sts.nhn.no")
    monkeypatch.setenv("INTAKE_AUTH_JWKS_FILE", str(jwks))
    result = runner.invoke(app, ["dev-token", "--orgnr", "974152533", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert not (tmp_path / "dev-issuer").exists()
