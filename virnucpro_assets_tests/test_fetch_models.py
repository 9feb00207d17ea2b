"""fetch-models against a local HTTP server on 127.0.0.1 serving tiny files: the Hugging Face
protocol for DNABERT-S, plain files for ESM-2 and the classifiers."""

import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from virnucpro_assets import fetch_models
from virnucpro_assets.errors import VirnucproError

ROOT = Path(__file__).parents[1]
COMMIT = "0" * 40


def git_blob(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class Files(http.server.ThreadingHTTPServer):
    """path -> (content, headers); a file listed in `truncated` is announced whole but cut short."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, tuple[bytes, dict]] = {}
        self.truncated: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_hub_file(self, name: str, content: bytes, large: bool = False) -> None:
        """A file of the DNABERT-S repo, with the headers the Hub sends (sha256 ETag for large files)."""
        etag = hashlib.sha256(content).hexdigest() if large else git_blob(content)
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'}
        if large:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(content))
        self.files[f"/{fetch_models.DNABERT_REPO}/resolve/main/{name}"] = (content, headers)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        path = self.path.split("?")[0]
        if path not in self.server.files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        content, headers = self.server.files[path]
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content[: len(content) // 2] if path in self.server.truncated else content)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    files = Files()
    thread = threading.Thread(target=files.serve_forever, daemon=True)
    thread.start()
    yield files
    files.shutdown()
    files.server_close()


def test_a_download_is_checked_and_renamed_into_place(server, tmp_path):
    server.files["/300_model.pth"] = (b"classifier bytes", {})
    fetched = fetch_models.download(f"{server.url}/300_model.pth", tmp_path / "300_model.pth", git_blob=git_blob(b"classifier bytes"))
    assert (tmp_path / "300_model.pth").read_bytes() == b"classifier bytes"
    assert fetched.sha256 == hashlib.sha256(b"classifier bytes").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["300_model.pth"]


def test_a_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.files["/500_model.pth"] = (b"tampered", {})
    expected = fetch_models.CLASSIFIER_BLOBS["500_model.pth"]
    with pytest.raises(VirnucproError, match=r"content does not match the published file \(git blob [0-9a-f]{40}, expected fc35d5ef"):
        fetch_models.download(f"{server.url}/500_model.pth", tmp_path / "500_model.pth", git_blob=expected)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_leaves_nothing(server, tmp_path):
    server.files["/models/esm2_t36_3B_UR50D.pt"] = (b"x" * 100_000, {})
    server.truncated.add("/models/esm2_t36_3B_UR50D.pt")
    with pytest.raises(VirnucproError, match="run fetch-models again"):
        fetch_models.download(f"{server.url}/models/esm2_t36_3B_UR50D.pt", tmp_path / "esm2_t36_3B_UR50D.pt")
    assert list(tmp_path.iterdir()) == []


def test_dnabert_files_come_through_the_hub_protocol_and_are_checked(server, tmp_path):
    server.add_hub_file("config.json", b'{"hidden_size": 8}')
    server.add_hub_file("tokenizer.json", b'{"model": {}}')
    server.add_hub_file("pytorch_model.bin", b"\x80weights", large=True)  # no model.safetensors: the .bin is taken
    fetched = fetch_models.fetch_dnabert(tmp_path / "DNABERT-S", server.url)
    assert [item.path.name for item in fetched] == ["config.json", "tokenizer.json", "pytorch_model.bin"]
    assert (tmp_path / "DNABERT-S" / "pytorch_model.bin").read_bytes() == b"\x80weights"
    assert fetched[2].checked == "matches the Hub's sha256"

    server.add_hub_file("config.json", b'{"hidden_size": 8}')
    content, headers = server.files[f"/{fetch_models.DNABERT_REPO}/resolve/main/config.json"]
    server.files[f"/{fetch_models.DNABERT_REPO}/resolve/main/config.json"] = (b'{"hidden_size": 9}', headers)
    with pytest.raises(VirnucproError, match="config.json of zhihan1996/DNABERT-S does not match the Hub's digest"):
        fetch_models.fetch_dnabert(tmp_path / "again", server.url)
    assert not (tmp_path / "again" / "config.json").exists()


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "virnucpro_assets.cli", "fetch-models", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_the_command_downloads_records_checksums_and_prints_the_settings(server, tmp_path):
    server.add_hub_file("config.json", b"{}")
    server.add_hub_file("tokenizer.json", b"{}")
    server.add_hub_file("model.safetensors", b"safetensors", large=True)
    server.files["/models/esm2_t36_3B_UR50D.pt"] = (b"esm2", {})
    server.files["/regression/esm2_t36_3B_UR50D-contact-regression.pt"] = (b"regression", {})
    done = run_cli("--dir", str(tmp_path), "--only", "dnabert,esm2", "--hf-endpoint", server.url, "--esm2-base-url", server.url)
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'esm2_t36_3B_UR50D.pt'}\tsha256 {hashlib.sha256(b'esm2').hexdigest()}\tno published checksum" in done.stdout
    assert done.stdout.strip().splitlines()[-2:] == [
        f"export VIRNUCPRO_DNABERT_MODEL={tmp_path / 'DNABERT-S'}",
        f"export VIRNUCPRO_ESM2_MODEL={tmp_path / 'esm2_t36_3B_UR50D.pt'}",
    ]
    sums = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert f"{hashlib.sha256(b'safetensors').hexdigest()}  DNABERT-S/model.safetensors" in sums and len(sums) == 5


def test_offline_it_says_which_file_goes_where(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    done = run_cli("--dir", str(tmp_path), "--only", "esm2,classifiers", "--esm2-base-url", url, "--classifier-base-url", url)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"virnucpro-assets: cannot reach {url}/models/esm2_t36_3B_UR50D.pt")
    table = lines[lines.index(next(line for line in lines if line.startswith("file "))) :]
    assert table[1].split() == ["esm2_t36_3B_UR50D.pt", f"{url}/models/esm2_t36_3B_UR50D.pt", str(tmp_path / "esm2_t36_3B_UR50D.pt")]
    assert table[3].split() == ["300_model.pth", f"{url}/300_model.pth", str(tmp_path / "300_model.pth")]
    assert f"export VIRNUCPRO_CLASSIFIER={tmp_path / '500_model.pth'}" in lines
    assert sorted(p.name for p in tmp_path.iterdir()) == []
