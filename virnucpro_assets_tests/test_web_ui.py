"""The Dagster UI as a person sees it: `dagster dev` on a temporary instance with the tiny demo models,
a run launched through the UI's own GraphQL endpoint, and pages rendered by headless Chromium
(Debian's chromium and chromedriver, driven by selenium). Screenshots are left in the test's
temporary directory."""

import csv
import shutil
from pathlib import Path

import dagster as dg
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from virnucpro_assets.demo import GENOMES
from virnucpro_assets.demo.models import build_demo_models
from virnucpro_assets.demo.reads import write_fasta
from virnucpro_assets.pipeline.jobs import SAMPLE_ASSETS
from virnucpro_assets_tests.daemon import Instance, wait_for
from virnucpro_assets_tests.processes import dagster_dev

# Without the networking flags Chromium keeps trying to reach Google, which this machine refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=2400,1350",
]
PAGE_TIMEOUT_S = 60
# A limit for a failing test, not a speed target: alone on two cores this test takes about 75 s.
RUN_TIMEOUT_S = 300


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, (
        "headless Chromium is needed: run .ci/run, which installs it, or apt-get install -y chromium chromium-driver"
    )
    options = Options()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


def page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def show_asset_graph(browser, url: str) -> None:
    """The global asset lineage with every group expanded (the UI's shortcut Alt+E)."""
    browser.get(f"{url}/asset-groups")
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda b: "ingest" in page_text(b))
    ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda b: all(name in page_text(b) for name in SAMPLE_ASSETS))


@pytest.mark.long(45)
def test_the_ui_shows_the_pipeline_and_runs_a_sample_to_its_report(tmp_path, genome_reads, browser):
    models = build_demo_models(tmp_path / "models", GENOMES, 500)
    instance = Instance(tmp_path, models, VIRNUCPRO_SHARDS="2", VIRNUCPRO_SENSOR_INTERVAL="1", VIRNUCPRO_INBOX=str(tmp_path / "inbox"))
    reads = tmp_path / "pond.fasta"
    write_fasta([r for r in genome_reads if len(r[1]) >= 300][:8], reads)
    instance.cli("virnucpro-assets", "add-sample", str(reads))

    with dagster_dev(instance, tmp_path / "dagster-dev.log") as ui, instance.dagster() as dagster:
        ui.graphql("mutation { setNuxSeen }")  # no "join the community" dialog over the pages
        run_id = ui.launch_run(["sample_reads"], "pond")
        assert ui.finished_run_status(run_id, RUN_TIMEOUT_S) == "SUCCESS", ui.log_tail()
        # Automation carries the sample on from sample_reads to its report.
        wait_for(lambda: "pond" in dagster.get_materialized_partitions(dg.AssetKey("sample_report")), RUN_TIMEOUT_S, "pond's sample_report")
        show_asset_graph(browser, ui.url)
        browser.save_screenshot(tmp_path / "asset-graph.png")

        browser.get(f"{ui.url}/assets/sample_report?view=partitions&partition=pond")
        WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda b: "reads_with_a_virus_chunk" in page_text(b) and "report.html" in page_text(b))
        browser.save_screenshot(tmp_path / "sample-report-partition.png")
        browser.find_element(By.XPATH, "//a[normalize-space()='[Show Markdown]']").click()
        plot = WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda b: b.find_element(By.CSS_SELECTOR, "img[alt='per-read scores']"))
        WebDriverWait(browser, PAGE_TIMEOUT_S).until(
            lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", plot)
        )
        browser.save_screenshot(tmp_path / "sample-report-plot.png")

        # The sample's HTML report, found through the link its materialization carries, opened as a file.
        record = dagster.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("sample_report"), asset_partitions=["pond"]), limit=1
        ).records[0]
        report = Path(record.asset_materialization.metadata["report"].value)
        assert report == instance.store / "sample_report" / "sample=pond" / "report.html"
        with open(report.parent / "per_read.tsv", newline="") as table:
            per_read = list(csv.DictReader(table, delimiter="\t"))
        scored = sorted((r for r in per_read if r["decision"] != "unscored"), key=lambda r: -float(r["max_virus_score"]))
        browser.get(report.as_uri())
        assert browser.title == "VirNucPro report: pond"
        assert browser.find_element(By.ID, "count-reads").text == str(len(per_read)) == "8"
        assert browser.find_element(By.ID, "count-reads_scored").text == str(len(scored))
        rows = browser.find_elements(By.CSS_SELECTOR, "#top-reads tbody tr")
        assert len(rows) == min(20, len(scored)) > 0
        assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == scored[0]["read_id"]
        histogram = browser.find_element(By.ID, "histogram")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", histogram) == 800
        browser.save_screenshot(tmp_path / "report.png")

        # Shard assets show their partitions as sample × shard.
        browser.get(f"{ui.url}/assets/predictions?view=partitions")
        WebDriverWait(browser, PAGE_TIMEOUT_S).until(lambda b: {"pond", "000", "001", "Materialized (2)"} <= set(page_text(b).splitlines()))
        browser.save_screenshot(tmp_path / "predictions-partitions.png")
