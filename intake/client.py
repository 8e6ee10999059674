"""``intake client``: a vendor's command line client for the reporting API (DESIGN §5).

``send`` posts message files to ``POST /v1/messages/{type}/{version}`` and prints each receipt;
``receipts`` reads the unit's feed of receipt changes (``GET /v1/receipts``), once or following it.

Both can be stopped at any moment and started again without harm:

* A message's ``Idempotency-Key`` comes from what is sent: the SHA-256 of the file's bytes, then
  the message type and version. Never from a counter, a clock or the file name, because whatever
  happened to an earlier attempt (a timeout after the server had accepted it, a crash, Ctrl-C),
  sending the same file again presents the same key, and the server answers with the original
  receipt instead of applying the items twice. A corrected file is new content, so a new message.
* The state file only saves requests: files recorded there with the same content are skipped.
  Losing it costs a re-send, which the key makes harmless.
* The feed cursor is stored after every page, so a restarted reader continues where it stopped.
  The feed is at-least-once: a change may be printed twice, but none is missed.

What happens on errors: ``429`` and ``503`` are retried after ``Retry-After`` seconds, other 5xx
and connection errors with exponential backoff, always with the same key, for a bounded number of
attempts and total wait (``receipts --follow`` keeps trying for ever). Any other 4xx is final for
that file: the problem's ``code`` and ``detail`` are printed and the exit code is 1.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

client_app = typer.Typer(
    no_args_is_help=True, help="A vendor's client: send messages and read their receipts."
)

TOKEN_ENV = "INTAKE_CLIENT_TOKEN"  # noqa: S105 - the variable's name, not a token
MAX_KEY_LENGTH = 255
FOLLOW_WAIT_SECONDS = 25
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# Markup off: file names, problem details and findings are printed as they are.
out = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)

Url = Annotated[
    str,
    typer.Option(envvar="INTAKE_CLIENT_URL", help="The server, e.g. https://intake.example.no."),
]
Token = Annotated[
    str | None,
    typer.Option(envvar=TOKEN_ENV, show_envvar=True, help="Bearer token for the reporting unit."),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="Read the token from this file instead."),
]


class ClientFailure(Exception):
    """The server refused, or stayed unreachable; the message says which and why."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RetriesExhausted(ClientFailure):
    """Transient failures lasted longer than the retry policy allows."""


class TokenRefused(ClientFailure):
    """401: every further request would be refused the same way."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one request; ``None`` means without limit."""

    max_attempts: int | None = 10
    max_total_wait: float | None = 300.0
    backoff_cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, 0.5 * 2.0 ** min(attempt - 1, 16))
        # Jitter keeps many clients from reconnecting in step after the same outage.
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - timing, not security


def send_with_retries(
    send: Callable[[], httpx.Response],
    policy: RetryPolicy,
    on_retry: Callable[[str, float], None],
) -> httpx.Response:
    """``send()`` again until the answer is not a transient failure; the caller decides the rest."""
    attempt = 0
    waited = 0.0
    while True:
        attempt += 1
        try:
            response = send()
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__} {exc}".strip()
            delay = policy.backoff(attempt)
        else:
            if response.status_code not in RETRYABLE_STATUSES:
                return response
            reason = describe_problem(response)
            announced = retry_after(response)
            delay = policy.backoff(attempt) if announced is None else announced
        out_of_attempts = policy.max_attempts is not None and attempt >= policy.max_attempts
        out_of_time = policy.max_total_wait is not None and waited + delay > policy.max_total_wait
        if out_of_attempts or out_of_time:
            raise RetriesExhausted(f"gave up after {attempt} attempts: {reason}")
        on_retry(reason, delay)
        policy.sleep(delay)
        waited += delay


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds; ``None`` when absent or not a number of seconds."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object (a receipt, a page, a problem); empty when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def describe_problem(response: httpx.Response) -> str:
    problem = json_object(response)
    code = problem.get("code") or response.reason_phrase
    detail = problem.get("detail") or problem.get("title")
    return f"{response.status_code} {code}" + (f": {detail}" if detail else "")


def finding_line(finding: dict[str, Any], prefix: str = "") -> str:
    where = finding.get("path") or ""
    return f"  {prefix}{where} {finding.get('rule_id')}: {finding.get('message_en')}"


def rejection_lines(receipt: dict[str, Any]) -> Iterator[str]:
    """Why each rejected item was rejected (its errors; warnings stay in the receipt)."""
    for item in receipt.get("items") or []:
        if item.get("status") == "rejected":
            for finding in item.get("findings") or []:
                if finding.get("severity") == "error":
                    yield finding_line(finding, prefix=f"item {item.get('index')} ")


def format_counts(counts: object) -> str:
    if not isinstance(counts, dict):
        return ""
    return " ".join(f"{name}={value}" for name, value in counts.items())


def receipt_summary(receipt: dict[str, Any]) -> str:
    return (
        f"{receipt.get('receipt_id')}  {receipt.get('status')}  "
        f"{format_counts(receipt.get('counts'))}"
    )


def content_key(message_type: str, version: int, body: bytes) -> str:
    """The Idempotency-Key for this content at this endpoint (see the module docstring).

    The hash comes first so that cutting to the header's 255 characters never shortens it."""
    key = f"sha256:{hashlib.sha256(body).hexdigest()}/{message_type}/{version}"
    return key[:MAX_KEY_LENGTH]


def read_token(token: str | None, token_file: Path | None) -> str:
    """``--token-file`` wins over ``--token`` (which also comes from the environment)."""
    if token_file is not None:
        token = token_file.read_text(encoding="utf-8").strip()
    if not token:
        err.print(f"No token: pass --token or --token-file, or set {TOKEN_ENV}.", style="red")
        raise typer.Exit(2)
    return token


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` so that a reader, or a crash, sees the old content or the new, not half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def http_client(url: str, token: str, read_timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=read_timeout),
    )


def warn_retry(what: str) -> Callable[[str, float], None]:
    def announce(reason: str, delay: float) -> None:
        err.print(f"{what}: {reason}; trying again in {delay:.1f}s", style="yellow")

    return announce


# --- send -----------------------------------------------------------------------------------


@dataclass
class SendState:
    """Files already sent, per server, keyed by their Idempotency-Key."""

    path: Path
    sent: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> SendState:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            sent = data["sent"]
            if not isinstance(sent, dict):
                raise TypeError("'sent' is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            err.print(
                f"{path} is not a state file this client wrote ({exc}). Move it away to start "
                "afresh: files sent before are then sent again and get their original receipts.",
                style="red",
            )
            raise typer.Exit(2) from exc
        return cls(path, sent)

    def get(self, server: str, key: str) -> dict[str, Any] | None:
        return self.sent.get(server, {}).get(key)

    def record(self, server: str, key: str, file: Path, receipt: dict[str, Any]) -> None:
        self.sent.setdefault(server, {})[key] = {
            "file": str(file),
            "receipt_id": receipt.get("receipt_id"),
            "status": receipt.get("status"),
            "sent_at": datetime.now(UTC).isoformat(),
        }
        data = json.dumps({"sent": self.sent}, indent=2, ensure_ascii=False) + "\n"
        write_atomically(self.path, data.encode("utf-8"))


@dataclass
class Tally:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    items_accepted: int = 0
    items_rejected: int = 0

    def count(self, receipt: dict[str, Any]) -> None:
        counts = receipt.get("counts") or {}
        self.sent += 1
        self.items_accepted += int(counts.get("accepted", 0))
        self.items_rejected += int(counts.get("rejected", 0))

    def summary(self) -> str:
        return (
            f"sent {self.sent}, skipped {self.skipped}, failed {self.failed}; "
            f"items accepted {self.items_accepted}, rejected {self.items_rejected}"
        )


@dataclass
class Sender:
    """Sends files one by one to one endpoint, recording each success in the state file."""

    http: httpx.Client
    server: str
    endpoint: str
    message_type: str
    version: int
    state: SendState
    headers: dict[str, str]
    dry_run: bool
    force: bool
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    tally: Tally = field(default_factory=Tally)

    def send(self, path: Path) -> None:
        """Send one file and print what became of it."""
        body = path.read_bytes()
        key = content_key(self.message_type, self.version, body)
        known = None if self.force or self.dry_run else self.state.get(self.server, key)
        if known is not None:
            self.tally.skipped += 1
            out.print(f"{path}  {known['receipt_id']}  skipped: sent before (--force sends again)")
            return
        try:
            response = send_with_retries(
                lambda: self.http.post(
                    self.endpoint,
                    content=body,
                    params={"dry_run": "true"} if self.dry_run else None,
                    headers={**self.headers, "Idempotency-Key": key},
                ),
                self.policy,
                warn_retry(str(path)),
            )
        except RetriesExhausted as exc:
            self._failed(path, str(exc))
            return
        if response.is_success:
            self._received(path, key, response)
        else:
            self._refused(path, response)

    def _received(self, path: Path, key: str, response: httpx.Response) -> None:
        receipt = json_object(response)
        if "receipt_id" not in receipt:
            self._failed(path, f"{response.status_code} without a receipt: {response.text[:200]}")
            return
        self.tally.count(receipt)
        replayed = response.headers.get("idempotent-replayed") == "true"
        out.print(f"{path}  {receipt_summary(receipt)}" + ("  (replayed)" if replayed else ""))
        for line in rejection_lines(receipt):
            out.print(line)
        if not self.dry_run:
            self.state.record(self.server, key, path, receipt)

    def _refused(self, path: Path, response: httpx.Response) -> None:
        self._failed(path, describe_problem(response))
        for finding in json_object(response).get("findings") or []:
            err.print(finding_line(finding))
        if response.status_code == 401:
            raise TokenRefused(describe_problem(response), "unauthorized")

    def _failed(self, path: Path, reason: str) -> None:
        self.tally.failed += 1
        err.print(f"{path}  failed: {reason}", style="red")


def slash_headers(
    vendor: str | None, software: str | None, software_version: str | None
) -> dict[str, str]:
    named = {
        "x-vendor-name": vendor,
        "x-software-name": software,
        "x-software-version": software_version,
    }
    return {"Content-Type": "application/json"} | {k: v for k, v in named.items() if v}


def progress_bar(total: int) -> Progress:
    return Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=True,
        disable=total < 2 or not out.is_terminal,
    )


@client_app.command()
def send(
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, readable=True, help="Message files (JSON)."),
    ],
    url: Url,
    message_type: Annotated[str, typer.Option("--type", help="Message type, e.g. HST_Avtale.")],
    version: Annotated[int, typer.Option("--version", min=1, help="Message model version.")],
    token: Token = None,
    token_file: TokenFile = None,
    dry_run: Annotated[
        bool, typer.Option(help="Validate only; the server stores nothing.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Send files the state file lists as sent.")] = False,
    state_file: Annotated[
        Path, typer.Option(help="Where sent files are recorded, to skip them next time.")
    ] = Path(".intake-client-state.json"),
    vendor: Annotated[str | None, typer.Option(help="Your company (x-vendor-name).")] = None,
    software: Annotated[str | None, typer.Option(help="The EPJ (x-software-name).")] = None,
    software_version: Annotated[
        str | None, typer.Option(help="The EPJ's version (x-software-version).")
    ] = None,
) -> None:
    """Send each FILE as one message and print its receipt; resumes where a run stopped."""
    server = url.rstrip("/")
    bearer = read_token(token, token_file)
    state = SendState.load(state_file)
    with http_client(server, bearer, read_timeout=120.0) as http, progress_bar(len(files)) as bar:
        sender = Sender(
            http=http,
            server=server,
            endpoint=f"/v1/messages/{quote(message_type, safe='')}/{version}",
            message_type=message_type,
            version=version,
            state=state,
            headers=slash_headers(vendor, software, software_version),
            dry_run=dry_run,
            force=force,
        )
        task = bar.add_task("send", total=len(files))
        for done, path in enumerate(files, start=1):
            try:
                sender.send(path)
            except TokenRefused:
                err.print("The token was refused; the remaining files were not sent.", style="red")
                sender.tally.failed += len(files) - done
                break
            bar.advance(task)
    out.print(sender.tally.summary())
    if sender.tally.failed:
        raise typer.Exit(1)


# --- receipts -------------------------------------------------------------------------------


def read_cursor(path: Path) -> str | None:
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def fetch_page(
    http: httpx.Client, cursor: str | None, limit: int, wait: float, policy: RetryPolicy
) -> tuple[list[dict[str, Any]], str]:
    """One page of the feed after ``cursor``: its changes and where to continue."""
    params: dict[str, str | int | float] = {"limit": limit, "wait": wait}
    if cursor is not None:
        params["after"] = cursor
    response = send_with_retries(
        lambda: http.get("/v1/receipts", params=params), policy, warn_retry("receipts")
    )
    if not response.is_success:
        raise ClientFailure(describe_problem(response), json_object(response).get("code"))
    page = json_object(response)
    changes, next_cursor = page.get("changes"), page.get("cursor")
    if not isinstance(changes, list) or not isinstance(next_cursor, str):
        raise ClientFailure(f"unexpected answer from the feed: {response.text[:200]}")
    return changes, next_cursor


def change_line(change: dict[str, Any]) -> str:
    receipt = change.get("receipt") or {}
    return (
        f"{change.get('changed_at')}  {receipt.get('receipt_id', '-')}  {change.get('kind')}  "
        f"{receipt.get('status', '-')}  {format_counts(receipt.get('counts'))}"
    )


def print_change(change: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(change, ensure_ascii=False))
    else:
        out.print(change_line(change))


@client_app.command()
def receipts(
    url: Url,
    token: Token = None,
    token_file: TokenFile = None,
    follow: Annotated[
        bool, typer.Option(help="Keep waiting for new changes until Ctrl-C.")
    ] = False,
    cursor_file: Annotated[
        Path, typer.Option(help="Where the feed position is kept between runs.")
    ] = Path(".intake-receipts-cursor"),
    limit: Annotated[int, typer.Option(min=1, max=500, help="Changes per page.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print each change as JSON.")] = False,
) -> None:
    """Print the changes to this unit's receipts since the last run, one line each."""
    wait = FOLLOW_WAIT_SECONDS if follow else 0
    # Following reconnects for ever; a single read gives up like `send` does.
    policy = RetryPolicy(max_attempts=None, max_total_wait=None) if follow else RetryPolicy()
    cursor = read_cursor(cursor_file)
    http = http_client(url.rstrip("/"), read_token(token, token_file), read_timeout=wait + 30.0)
    try:
        with http:
            while True:
                changes, next_cursor = fetch_page(http, cursor, limit, wait, policy)
                for change in changes:
                    print_change(change, as_json)
                if next_cursor != cursor:
                    write_atomically(cursor_file, f"{next_cursor}\n".encode())
                    cursor = next_cursor
                if not changes and not follow:
                    return
    except ClientFailure as exc:
        err.print(f"receipts: {exc}", style="red")
        if exc.code == "invalid_cursor":
            err.print(f"Delete {cursor_file} to read the feed from the beginning.", style="red")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        err.print(f"stopped; the position is kept in {cursor_file}")
        raise typer.Exit(130) from None
