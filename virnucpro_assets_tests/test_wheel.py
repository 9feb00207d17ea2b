"""The wheel carries what an installed package needs: `init` finds dagster.yaml without a checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_init_works_from_the_unpacked_wheel(tmp_path):
    # The project's own setuptools (no build isolation, so no download); --no-deps: this wheel only.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT), "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "dist").glob("virnucpro_assets-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert archive.read("virnucpro_assets/dagster.yaml") == (ROOT / "virnucpro_assets" / "dagster.yaml").read_bytes()
        license_file = next(name for name in names if name.endswith(".dist-info/licenses/LICENSE"))
        assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
        archive.extractall(tmp_path / "installed")

    home = tmp_path / "dagster_home"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "installed"), "DAGSTER_HOME": str(home), "VIRNUCPRO_FAKE_GPUS": "2"}
    script = "import sys, virnucpro_assets.cli as cli; print(cli.__file__); sys.exit(cli.main(['init']))"
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    imported_from, initialised = done.stdout.splitlines()[:2]
    assert Path(imported_from).is_relative_to(tmp_path / "installed")  # the unpacked wheel, not the checkout
    assert initialised == f"instance {home} (sqlite): gpu pool limit 4"  # two steps per device
    assert (home / "dagster.yaml").read_bytes() == (ROOT / "virnucpro_assets" / "dagster.yaml").read_bytes()
