"""``intake client`` as a vendor runs it: ``.venv/bin/intake client ...`` in its own working
directory against a real ``intake serve`` process. Sending resumes from the state file and a forced
re-send gets the original receipts; the receipt feed continues from the stored cursor. The retry
rules (``Retry-After``, connection errors, the bounds) are checked against a scripted transport."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from intake.client import RetriesExhausted, RetryPolicy, Sender, SendState, send_with_retries
from tests.conftest import UNIT
from tests.integration.helpers import MODELS, wait_for_status

INTAKE = str(Path(sys.executable).parent / "intake")
EXAMPLE = MODELS / "HST_Avtale" / "1" / "examples" / "valid" / "example.json"
SEND = ("send", "--type", "HST_Avtale", "--version", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")} | extra


@dataclass(frozen=True)
class Served:
    url: str
    token: str


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """``intake serve`` on a free loopback port with its own data dir, and a token for UNIT."""
    data_dir, log_path, port = tmp_path / "data", tmp_path / "server.log", _free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [INTAKE, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(600):
            assert process.poll() is None, f"server died:\n{log_path.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(f"server never became ready:\n{log_path.read_text()[-3000:]}")
        token = subprocess.run(
            [INTAKE, "dev-token", "--orgnr", UNIT, "--data-dir", str(data_dir)],
            env=_env(),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        yield Served(url, token)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The vendor's folder: the example message, a copy with other ids, and a broken file."""
    folder = tmp_path / "vendor"
    folder.mkdir()
    (folder / "a.json").write_bytes(EXAMPLE.read_bytes())
    message = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for block in message:
        for item in block.get("avtale", []) + block.get("slettAvtale", []):
            item["avtaleId"] = "B-" + item["avtaleId"]
    (folder / "b.json").write_text(json.dumps(message, ensure_ascii=False), encoding="utf-8")
    (folder / "broken.json").write_text('[{"orgNr": "974152533",', encoding="utf-8")
    return folder


def intake_client(
    workdir: Path, server: Served, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INTAKE, "client", *args, "--url", server.url],
        cwd=workdir,
        env=_env(INTAKE_CLIENT_TOKEN=server.token),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def printed_receipts(stdout: str) -> dict[str, tuple[str, str]]:
    """``file  receipt_id  status ...`` lines, as file -> (receipt id, the rest)."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split(maxsplit=2)
        if parts and parts[0].endswith(".json"):
            found[parts[0]] = (parts[1], parts[2])
    return found


@pytest.mark.slow
def test_send_prints_receipts_skips_what_was_sent_and_force_replays(
    server: Served, workdir: Path
) -> None:
    first = intake_client(workdir, server, *SEND, "a.json", "b.json")
    assert first.returncode == 0, first.stderr
    sent = printed_receipts(first.stdout)
    assert set(sent) == {"a.json", "b.json"}
    assert sent["a.json"][0] != sent["b.json"][0]
    assert all(rest.startswith("accepted  items=3 accepted=3") for _, rest in sent.values())
    assert "sent 2, skipped 0, failed 0; items accepted 6, rejected 0" in first.stdout
    state = json.loads((workdir / ".intake-client-state.json").read_text())
    recorded = state["sent"][server.url]
    assert sorted(e["receipt_id"] for e in recorded.values()) == sorted(r for r, _ in sent.values())

    again = intake_client(workdir, server, *SEND, "a.json", "b.json")
    assert again.returncode == 0, again.stderr
    skipped = printed_receipts(again.stdout)
    assert {f: r for f, (r, _) in skipped.items()} == {f: r for f, (r, _) in sent.items()}
    assert all(rest.startswith("skipped") for _, rest in skipped.values())
    assert "sent 0, skipped 2, failed 0" in again.stdout

    forced = intake_client(workdir, server, *SEND, "a.json", "b.json", "--force")
    assert forced.returncode == 0, forced.stderr
    replayed = printed_receipts(forced.stdout)
    # Same content, same key: the server answers with the original receipts.
    assert {f: r for f, (r, _) in replayed.items()} == {f: r for f, (r, _) in sent.items()}
    assert all(rest.endswith("(replayed)") for _, rest in replayed.values())
    assert "sent 2, skipped 0, failed 0" in forced.stdout


@pytest.mark.slow
def test_a_refused_file_fails_the_run_with_the_problem_code(server: Served, workdir: Path) -> None:
    result = intake_client(workdir, server, *SEND, "broken.json", "a.json")
    assert result.returncode == 1
    assert "broken.json  failed: 400 malformed_json" in result.stderr
    assert set(printed_receipts(result.stdout)) == {"a.json"}, "the other file is still sent"
    assert "sent 1, skipped 0, failed 1" in result.stdout
    state = json.loads((workdir / ".intake-client-state.json").read_text())
    assert [e["file"] for e in state["sent"][server.url].values()] == ["a.json"]


async def _sent_and_applied(server: Served, workdir: Path) -> set[str]:
    sent = intake_client(workdir, server, *SEND, "a.json", "b.json")
    assert sent.returncode == 0, sent.stderr
    receipt_ids = {r for r, _ in printed_receipts(sent.stdout).values()}
    # Once applied, a receipt has no further changes: the feed below is complete and stays so.
    async with httpx.AsyncClient(base_url=server.url) as http:
        for receipt_id in receipt_ids:
            auth = {"Authorization": f"Bearer {server.token}"}
            await wait_for_status(http, receipt_id, auth, {"applied"})
    return receipt_ids


@pytest.mark.slow
async def test_receipts_prints_the_feed_and_continues_from_the_stored_cursor(
    server: Served, workdir: Path
) -> None:
    receipt_ids = await _sent_and_applied(server, workdir)

    first = intake_client(workdir, server, "receipts", "--limit", "1")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert {line.split()[1] for line in lines} == receipt_ids
    assert {line.split()[2] for line in lines} <= {"validated", "applied", "integrity"}
    assert all(line.split()[3] == "applied" for line in lines), "receipts as they are now"
    assert "items=3 accepted=3 rejected=0" in lines[0]
    cursor = (workdir / ".intake-receipts-cursor").read_text().strip()
    assert cursor

    second = intake_client(workdir, server, "receipts")
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""
    assert (workdir / ".intake-receipts-cursor").read_text().strip() == cursor

    as_json = intake_client(workdir, server, "receipts", "--json", "--cursor-file", "other")
    assert as_json.returncode == 0, as_json.stderr
    changes = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(changes) == len(lines)
    assert {c["receipt"]["receipt_id"] for c in changes} == receipt_ids
    assert (workdir / "other").read_text().strip() == cursor


@pytest.mark.slow
def test_receipts_with_a_bad_cursor_says_so(server: Served, workdir: Path) -> None:
    (workdir / ".intake-receipts-cursor").write_text("not-a-cursor\n")
    result = intake_client(workdir, server, "receipts")
    assert result.returncode == 1
    assert "400 invalid_cursor" in result.stderr


@pytest.mark.slow
def test_receipts_follow_waits_for_new_changes_until_ctrl_c(server: Served, workdir: Path) -> None:
    follower = subprocess.Popen(
        [INTAKE, "client", "receipts", "--follow", "--url", server.url],
        cwd=workdir,
        env=_env(INTAKE_CLIENT_TOKEN=server.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell may start background jobs with Ctrl-C ignored; the follower must get it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(1)  # the follower is now long-polling an empty feed
        sent = intake_client(workdir, server, *SEND, "a.json")
        receipt_id = printed_receipts(sent.stdout)["a.json"][0]
        cursor_file = workdir / ".intake-receipts-cursor"
        for _ in range(200):
            if cursor_file.exists():
                break
            time.sleep(0.05)
        time.sleep(0.5)
        follower.send_signal(signal.SIGINT)
        stdout, stderr = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 130, stderr
    assert receipt_id in stdout.splitlines()[0]
    assert "stopped; the position is kept in" in stderr
    assert cursor_file.read_text().strip()


# --- retries, against a scripted server -------------------------------------------------------


Answer = httpx.Response | Exception


def scripted(answers: list[Answer], seen: list[httpx.Request]) -> httpx.Client:
    """A client whose requests get ``answers`` in turn (an exception is raised, as on a network)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(base_url="http://intake.test", transport=httpx.MockTransport(handle))


def unavailable(seconds: str) -> httpx.Response:
    problem = {"status": 503, "code": "log_unavailable", "title": "Try again later"}
    return httpx.Response(503, json=problem, headers={"Retry-After": seconds})


RECEIPT: dict[str, Any] = {
    "receipt_id": "r-1",
    "status": "accepted",
    "counts": {"items": 1, "accepted": 1, "rejected": 0},
    "items": [],
}


def sender(http: httpx.Client, tmp_path: Path, policy: RetryPolicy) -> Sender:
    return Sender(
        http=http,
        server="http://intake.test",
        endpoint="/v1/messages/HST_Avtale/1",
        message_type="HST_Avtale",
        version=1,
        state=SendState(tmp_path / "state.json"),
        headers={"Content-Type": "application/json"},
        dry_run=False,
        force=False,
        policy=policy,
    )


def recording_sleep() -> tuple[list[float], Callable[[float], None]]:
    slept: list[float] = []
    return slept, slept.append


def test_send_waits_retry_after_and_resends_with_the_same_key(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    slept, sleep = recording_sleep()
    answers: list[Answer] = [
        unavailable("2"),
        httpx.ConnectError("refused"),
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(202, json=RECEIPT),
    ]
    message = tmp_path / "m.json"
    message.write_text("[]")
    with scripted(answers, seen) as http:
        s = sender(http, tmp_path, RetryPolicy(sleep=sleep))
        s.send(message)
    assert len(seen) == 4
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert {r.content for r in seen} == {b"[]"}
    assert slept[::2] == [2.0, 1.0], "Retry-After is honoured"
    assert 0 < slept[1] <= 1.0, "a connection error backs off"
    assert (s.tally.sent, s.tally.failed) == (1, 0)
    key = seen[0].headers["Idempotency-Key"]
    assert SendState.load(tmp_path / "state.json").get("http://intake.test", key) is not None


def test_send_gives_up_after_the_attempts_and_records_nothing(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    slept, sleep = recording_sleep()
    message = tmp_path / "m.json"
    message.write_text("[]")
    with scripted([unavailable("1") for _ in range(3)], seen) as http:
        s = sender(http, tmp_path, RetryPolicy(max_attempts=3, sleep=sleep))
        s.send(message)
    assert len(seen) == 3
    assert slept == [1.0, 1.0]
    assert s.tally.failed == 1
    assert not (tmp_path / "state.json").exists()


def test_retry_after_beyond_the_total_wait_gives_up_at_once() -> None:
    seen: list[httpx.Request] = []
    slept, sleep = recording_sleep()
    with (
        scripted([unavailable("600")], seen) as http,
        pytest.raises(RetriesExhausted, match="503 log_unavailable"),
    ):
        send_with_retries(
            lambda: http.get("/"), RetryPolicy(max_total_wait=60, sleep=sleep), lambda *_: None
        )
    assert slept == []
