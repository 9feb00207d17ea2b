"""`virnucpro-assets fetch-models`: the official models, downloaded, checked and put in one directory.

- DNABERT-S: config.json, tokenizer.json and the weights (model.safetensors, else pytorch_model.bin)
  of the Hugging Face repo zhihan1996/DNABERT-S, through huggingface_hub's `hf_hub_download`;
  never its code files. Each is checked against the digest the Hub gives for it (the sha256 of a
  large file; the git blob id of a small one).
- ESM-2 3B: fair-esm's checkpoint and its contact-regression file (which this project never reads;
  fair-esm's own loader wants it beside the checkpoint). fair-esm publishes no checksums: the
  sha256 of what was downloaded is printed and recorded in the directory's SHA256SUMS.
- The original's classifiers 300_model.pth and 500_model.pth, from the VirNucPro repository at a
  fixed commit, checked against their git blob ids in that commit.

Each file is written under a temporary name and renamed into place only once complete and checked:
an interrupted or corrupt download leaves nothing at the final path. Offline, it prints which file
goes where instead.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from virnucpro_assets.errors import VirnucproError
from virnucpro_assets.storage.checksums import sha256_file

DNABERT_REPO = "zhihan1996/DNABERT-S"
DNABERT_DIR = "DNABERT-S"
DNABERT_FILES = ("config.json", "tokenizer.json")
DNABERT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the first the repo has
ESM2_BASE_URL = "https://dl.fbaipublicfiles.com/fair-esm"
ESM2_NAME = "esm2_t36_3B_UR50D"
ESM2_FILES = {
    f"{ESM2_NAME}.pt": f"models/{ESM2_NAME}.pt",
    f"{ESM2_NAME}-contact-regression.pt": f"regression/{ESM2_NAME}-contact-regression.pt",
}
# The VirNucPro repository's files at its newest commit (0f93f27, 2024); the classifiers were added
# in 0b7e6f1 and not changed since. Their git blob ids, from that tree, check the downloads.
CLASSIFIER_BASE_URL = "https://raw.githubusercontent.com/Li-Jing-1997/VirNucPro/0f93f2755a7ea1acd3ff1bcf182892f960ef3326"
CLASSIFIER_BLOBS = {
    "300_model.pth": "a0b5b85e7c1e44f00cde146d091beb82b2c8e855",
    "500_model.pth": "fc35d5ef9f1f4564eea7036f34f4f8ec6000d33d",
}
GROUPS = ("dnabert", "esm2", "classifiers")
TIMEOUT_S = 60
CHECKSUMS_FILE = "SHA256SUMS"


class OfflineError(VirnucproError):
    """A download site that cannot be reached at all (as opposed to one that answers with an error)."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    checked: str  # how the content was checked, for the user


def add_command(commands) -> None:
    fetch = commands.add_parser("fetch-models", help="download the official DNABERT-S, ESM-2 3B and classifier files")
    fetch.add_argument("--dir", type=Path, help="where the models go (default: ~/.virnucpro/models, or $DAGSTER_HOME/models)")
    fetch.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {', '.join(GROUPS)} (default: all)")
    fetch.add_argument("--hf-endpoint", help="Hugging Face endpoint or mirror (default: huggingface_hub's, HF_ENDPOINT)")
    fetch.add_argument("--esm2-base-url", default=ESM2_BASE_URL, help="fair-esm's download site or a mirror")
    fetch.add_argument("--classifier-base-url", default=CLASSIFIER_BASE_URL, help="where 300_model.pth and 500_model.pth are")


def run_command(args: argparse.Namespace) -> int:
    from virnucpro_assets.settings import instance_directory

    groups = [group.strip() for group in args.only.split(",") if group.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        raise VirnucproError(f"--only {args.only!r}: choose from {', '.join(GROUPS)}")
    directory = (args.dir or instance_directory() / "models").expanduser().absolute()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fetched = fetch(directory, groups, args.hf_endpoint, args.esm2_base_url.rstrip("/"), args.classifier_base_url.rstrip("/"))
    except OfflineError as error:
        print(f"virnucpro-assets: {error}\n\nOffline: put these files in place by hand, then use the settings below.\n")
        print(where_files_go(directory, groups, args.hf_endpoint, args.esm2_base_url.rstrip("/"), args.classifier_base_url.rstrip("/")))
        print()
        print(settings_to_use(directory, groups))
        return 1
    for item in fetched:
        print(f"{item.path}\tsha256 {item.sha256}\t{item.checked}")
    record_checksums(directory, fetched)
    print(f"\n(sha256 of each file recorded in {directory / CHECKSUMS_FILE})\n")
    print(settings_to_use(directory, groups))
    return 0


def fetch(directory: Path, groups: list[str], hf_endpoint: str | None, esm2_base_url: str, classifier_base_url: str) -> list[Fetched]:
    fetched = []
    if "dnabert" in groups:
        fetched += fetch_dnabert(directory / DNABERT_DIR, hf_endpoint)
    if "esm2" in groups:
        for name, path in ESM2_FILES.items():
            fetched.append(download(f"{esm2_base_url}/{path}", directory / name))
    if "classifiers" in groups:
        for name, blob in CLASSIFIER_BLOBS.items():
            fetched.append(download(f"{classifier_base_url}/{name}", directory / name, git_blob=blob))
    return fetched


def fetch_dnabert(directory: Path, endpoint: str | None) -> list[Fetched]:
    """config.json, tokenizer.json and the first weight file the repo has, checked against the
    digests the Hub reports (hf_hub_download writes each atomically into `directory`)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    def metadata(name: str):
        try:
            return get_hf_file_metadata(hf_hub_url(DNABERT_REPO, name, endpoint=endpoint), timeout=TIMEOUT_S)
        except _hub_unreachable_errors() as error:
            raise OfflineError(f"cannot reach the Hugging Face Hub for {DNABERT_REPO} ({error})") from None

    fetched = []
    weights = None
    for name in DNABERT_WEIGHTS:
        try:
            weights = (name, metadata(name))
            break
        except EntryNotFoundError:
            continue
    if weights is None:
        raise VirnucproError(f"{DNABERT_REPO} has none of {', '.join(DNABERT_WEIGHTS)}")
    for name, info in [*((n, metadata(n)) for n in DNABERT_FILES), weights]:
        try:
            path = Path(hf_hub_download(DNABERT_REPO, name, local_dir=directory, endpoint=endpoint, etag_timeout=TIMEOUT_S))
        except _hub_unreachable_errors() as error:
            raise VirnucproError(f"{name} of {DNABERT_REPO}: download interrupted ({error}); run fetch-models again") from None
        sha256 = sha256_file(path)
        expected = (info.etag or "").strip('"').removeprefix("W/").strip('"')
        actual = sha256 if len(expected) == 64 else git_blob_id(path)
        if actual != expected:
            path.unlink()
            raise VirnucproError(
                f"{name} of {DNABERT_REPO} does not match the Hub's digest ({expected or 'none given'}; got {actual}): "
                "removed it; run fetch-models again"
            )
        fetched.append(Fetched(path, sha256, f"matches the Hub's {'sha256' if len(expected) == 64 else 'git blob id'}"))
    return fetched


def _hub_unreachable_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub raises when it cannot talk to the Hub: its HTTP client's transport
    errors (httpx2 from huggingface_hub 2, httpx before) and its offline mode."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        import httpx2 as client
    except ImportError:
        import httpx as client
    return (client.TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError)


def download(url: str, destination: Path, git_blob: str | None = None) -> Fetched:
    """`url` to `destination`, through a temporary file renamed into place once the whole body
    (Content-Length) arrived and, if `git_blob` is given, its git blob id matches. A complete
    `destination` already there is kept (checked again if `git_blob` is given)."""
    if destination.is_file() and (git_blob is None or git_blob_id(destination) == git_blob):
        return Fetched(destination, sha256_file(destination), "already there, not downloaded again")
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    received = 0
    try:
        try:
            response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as error:
            raise VirnucproError(f"{url}: HTTP {error.code} {error.reason}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
            raise OfflineError(f"cannot reach {url} ({getattr(error, 'reason', error)})") from None
        expected_size = response.headers.get("Content-Length")
        digest = hashlib.sha256()
        with response, open(temporary, "wb") as out:
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
                    received += len(block)
            except (http.client.IncompleteRead, OSError) as error:
                raise VirnucproError(f"{url}: download interrupted after {received:,} bytes ({error}); run fetch-models again") from None
            out.flush()
            os.fsync(out.fileno())
        if expected_size is not None and received != int(expected_size):
            raise VirnucproError(f"{url}: got {received:,} of {int(expected_size):,} bytes; run fetch-models again")
        checked = "no published checksum: sha256 of what was downloaded"
        if git_blob is not None:
            actual = git_blob_id(temporary)
            if actual != git_blob:
                raise VirnucproError(f"{url}: content does not match the published file (git blob {actual}, expected {git_blob})")
            checked = "matches the git blob id in the VirNucPro repository"
        os.replace(temporary, destination)
        return Fetched(destination, digest.hexdigest(), checked)
    finally:
        temporary.unlink(missing_ok=True)


def git_blob_id(path: Path) -> str:
    """git's object id of the file's content: sha1 of `blob <size>\\0` + content."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_checksums(directory: Path, fetched: list[Fetched]) -> None:
    """Merge the files' sha256 into `directory`/SHA256SUMS (`sha256sum -c` reads it)."""
    from virnucpro_assets.storage.store import atomic_path

    file = directory / CHECKSUMS_FILE
    lines = {}
    if file.exists():
        for line in file.read_text().splitlines():
            digest, _, name = line.partition("  ")
            if name:
                lines[name] = digest
    lines.update({str(item.path.relative_to(directory)): item.sha256 for item in fetched})
    with atomic_path(file) as temporary:
        temporary.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(lines.items())))


def where_files_go(directory: Path, groups: list[str], hf_endpoint: str | None, esm2_base_url: str, classifier_base_url: str) -> str:
    hub = (hf_endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    rows = []
    if "dnabert" in groups:
        names = ", ".join((*DNABERT_FILES, " or ".join(DNABERT_WEIGHTS)))
        rows.append((names, f"{hub}/{DNABERT_REPO}/tree/main", f"{directory / DNABERT_DIR}/"))
    if "esm2" in groups:
        rows += [(name, f"{esm2_base_url}/{path}", str(directory / name)) for name, path in ESM2_FILES.items()]
    if "classifiers" in groups:
        rows += [(name, f"{classifier_base_url}/{name}", str(directory / name)) for name in CLASSIFIER_BLOBS]
    header = ("file", "from", "put it at")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in [header, *rows])


def settings_to_use(directory: Path, groups: list[str]) -> str:
    lines = []
    if "dnabert" in groups:
        lines.append(f"export VIRNUCPRO_DNABERT_MODEL={directory / DNABERT_DIR}")
    if "esm2" in groups:
        lines.append(f"export VIRNUCPRO_ESM2_MODEL={directory / f'{ESM2_NAME}.pt'}")
    if "classifiers" in groups:
        lines.append(f"export VIRNUCPRO_CLASSIFIER={directory / '500_model.pth'}")
        lines.append("export VIRNUCPRO_CHUNK_LENGTH=500")
        lines.append(f"# for 300-letter chunks: VIRNUCPRO_CLASSIFIER={directory / '300_model.pth'} VIRNUCPRO_CHUNK_LENGTH=300")
    return "\n".join(lines)
