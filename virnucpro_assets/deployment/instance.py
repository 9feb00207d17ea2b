"""The instance's dagster.yaml: the project's default (embedded sqlite, one machine), or the same
with the PostgreSQL profile (virnucpro_assets/instance/postgres.yaml) for a deployment over hosts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from virnucpro_assets.errors import VirnucproError

PACKAGE = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PACKAGE / "dagster.yaml"
POSTGRES_PROFILE = PACKAGE / "instance" / "postgres.yaml"


def instance_config(postgres_url: str | None = None) -> str:
    config = DEFAULT_CONFIG.read_text()
    if postgres_url is None:
        return config
    check_postgres_url(postgres_url)
    # SQLAlchemy 2.1 reads a bare postgresql:// as the psycopg 3 driver; dagster-postgres brings psycopg2.
    scheme, rest = postgres_url.split("://", 1)
    url = f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else postgres_url
    # A JSON string is a YAML string: the URL's characters need no further quoting.
    return f"{config}\n{POSTGRES_PROFILE.read_text().replace('POSTGRES_URL', json.dumps(url))}"


def check_postgres_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg2") or not parts.hostname or not parts.path.strip("/"):
        raise VirnucproError(f"--postgres {redacted(url)!r}: give a URL like postgresql://user:password@host:5432/database")


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def write_instance_config(home: Path, postgres_url: str | None = None) -> bool:
    """Write $DAGSTER_HOME/dagster.yaml unless it exists; with a Postgres URL, also over a file this
    function wrote before (the default, or another URL's), never over one edited by hand. Returns
    whether it wrote."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    wanted = instance_config(postgres_url)
    if path.exists():
        current = path.read_text()
        if current == wanted or postgres_url is None:
            return False
        postgres_prefix = f"{instance_config()}\n{POSTGRES_PROFILE.read_text().split('POSTGRES_URL')[0]}"
        if current != instance_config() and not current.startswith(postgres_prefix):
            raise VirnucproError(f"{path} was edited: not replacing it; add the storage section of {POSTGRES_PROFILE} to it yourself")
    path.write_text(wanted)
    if postgres_url is not None:
        os.chmod(path, 0o600)  # it holds the database password
    return True
