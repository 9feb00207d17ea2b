import numpy as np
import pytest
import xxhash

from virnucpro_assets.errors import CorruptDataError
from virnucpro_assets.storage import checksums
from virnucpro_assets.storage.checksums import digest_bytes, digest_file
from virnucpro_assets.storage.tables import verified_buffer


@pytest.fixture
def small_windows(monkeypatch):
    """Windows of 64 KiB, so that a test file of a few hundred KiB is hashed by several threads."""
    monkeypatch.setattr(checksums, "WINDOW", 1 << 16)
    return 1 << 16


@pytest.fixture
def content():
    return np.random.default_rng(3).integers(0, 256, (5 << 16) + 123, dtype=np.uint8).tobytes()


def test_a_file_and_its_bytes_have_one_digest_over_many_windows(tmp_path, small_windows, content):
    path = tmp_path / "table.arrow"
    path.write_bytes(content)
    digest = digest_file(path)
    assert digest == digest_bytes(content) and digest.startswith("xxh3_128x64m:")
    # What the digest is, computed here on its own: the hash of the length and of each window's hash.
    windows = [xxhash.xxh3_128_digest(content[i : i + small_windows]) for i in range(0, len(content), small_windows)]
    assert len(windows) == 6
    assert digest == "xxh3_128x64m:" + xxhash.xxh3_128_hexdigest(len(content).to_bytes(8, "little") + b"".join(windows))
    empty = tmp_path / "empty.parquet"
    empty.touch()
    assert digest_file(empty) == digest_bytes(b"") != digest_bytes(b"\0")


@pytest.mark.parametrize("position", [0, (1 << 16) - 1, 1 << 16, (3 << 16) + 7, -1])
def test_one_changed_byte_in_any_window_changes_the_digest(small_windows, content, position):
    changed = bytearray(content)
    changed[position] ^= 0x01
    assert digest_bytes(bytes(changed)) != digest_bytes(content)


def test_windows_swapped_or_the_content_cut_at_a_window_change_the_digest(small_windows, content):
    first, second = content[:small_windows], content[small_windows : 2 * small_windows]
    assert digest_bytes(second + first + content[2 * small_windows :]) != digest_bytes(content)
    assert digest_bytes(content[: 2 * small_windows]) != digest_bytes(content[: 2 * small_windows] + b"\0")


def test_digests_recorded_in_the_former_single_pass_format_still_verify(tmp_path, content):
    path = tmp_path / "shard=000.parquet"
    path.write_bytes(content)
    former = "xxh3_128:" + xxhash.xxh3_128_hexdigest(content)
    assert digest_file(path, checksums.SINGLE_PASS) == former
    assert verified_buffer(path, former, str(path)).to_pybytes() == content
    path.write_bytes(content[:-1] + b"\0")
    with pytest.raises(CorruptDataError, match="shard=000.parquet: its content"):
        verified_buffer(path, former, str(path))
    with pytest.raises(CorruptDataError, match="shard=000.parquet: its recorded digest cannot be checked: unknown digest algorithm 'md5'"):
        verified_buffer(path, "md5:0123", str(path))
