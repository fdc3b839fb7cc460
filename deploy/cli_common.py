"""What every `cxpulse` command shares: its consoles, its settings and how it fails."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console

from cxpulse.deploy.kafka import KafkaError
from cxpulse.deploy.logs import configure as configure_logging
from cxpulse.streams.settings import Settings

#: Command output (stdout), and errors and progress (stderr), so output stays pipeable.
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def load_settings() -> Settings:
    """The settings, with logging configured from them; an invalid one names its variable and
    exits with status 2."""
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = f"CXPULSE_{'_'.join(str(part) for part in error['loc']).upper()}"
            err.print(f"[red]error:[/red] {name}: {error['msg']} (got {error.get('input')!r})")
        raise typer.Exit(code=2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def fail(message: str) -> typer.Exit:
    """Print an error; the caller raises the returned exit (status 1)."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


def bootstrap_or_fail(settings: Settings) -> str:
    """The Kafka bootstrap servers (configured, else the running local broker), or exit."""
    from cxpulse.deploy.stack import resolve_bootstrap

    try:
        return resolve_bootstrap(settings)
    except KafkaError as exc:
        raise fail(str(exc)) from exc


def api_access(settings: Settings, url: str | None) -> tuple[str, str]:
    """(base URL, API key) of the metrics API: `url`, else the running `up` stack's, with the
    first plain key of the settings (or the one `up` generated); exits when there is none."""
    from cxpulse.api.server import ApiError, resolve_keys

    try:
        _, shown = resolve_keys(settings, generate=False)
    except ApiError as exc:
        raise fail(str(exc)) from exc
    key = shown or settings.api_keys.get_secret_value().split(",")[0].strip()  # type: ignore[union-attr]
    if key.startswith("sha256:"):
        raise fail("CXPULSE_API_KEYS holds only hashes; set a plain key to reach the API")
    return url or f"http://{settings.api_host}:{settings.api_port}", key
