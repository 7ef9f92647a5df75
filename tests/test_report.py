"""The HTML report and the plot commands, on a small real results database: digits with CCE and GCE
at noise 0 and 0.4, two seeds, three epochs, and digits_retrieval with CCE at 0.4 (for CMC)."""

from __future__ import annotations

import math
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.leaderboard import sections
from benchsuite.plotting import DISTINCT_SERIES, series_styles
from benchsuite.results import curves_dataframe, to_dataframe

SERIES = re.compile(r'id="series-\d+-\d+"')
T_975_ONE_DF = math.tan(0.475 * math.pi)  # Student's t with 1 degree of freedom is Cauchy: its 97.5 % quantile


@pytest.fixture(scope="module")
def results_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("report") / "results.sqlite"
    # In this process: a pool's spawned workers (the automatic executor on 2 cores) would cost more
    # than these tiny cells; the pool has its own tests (test_executors.py).
    common = ["--seeds", "0,1", "--epochs", "3", "--no-progress", "--no-leaderboard", "--results", str(db), "--executor", "local"]
    runner = CliRunner()
    digits = runner.invoke(main, ["run", "-m", "cce", "-m", "gce", "-t", "digits{width = 16}", "--noise", "symmetric:0,0.4", *common])
    assert digits.exit_code == 0, digits.output
    retrieval = runner.invoke(main, ["run", "-m", "cce", "-t", "digits_retrieval{width = 16}", "--noise", "symmetric:0.4", *common])
    assert retrieval.exit_code == 0, retrieval.output
    return db


@pytest.fixture(scope="module")
def report_dir(results_db, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "report"
    result = CliRunner().invoke(main, ["report", "--results", str(results_db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


class _Tables(HTMLParser):
    """The board tables of a page: per table, its header texts and its rows of (text, data-value)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._cell: list[str] | None = None
        self._value: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "board":
            self.tables.append({"header": [], "rows": []})
        elif self.tables and tag == "tr" and "data-label" in attrs:
            self.tables[-1]["rows"].append([])
        elif self.tables and tag in ("td", "th"):
            self._cell, self._value = [], attrs.get("data-value")

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            if tag == "th":
                self.tables[-1]["header"].append(text)
            else:
                self.tables[-1]["rows"][-1].append((text, self._value))
            self._cell = None


def _tables(page: str) -> list[dict]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_tables_are_the_boards_numbers(results_db, report_dir):
    page = (report_dir / "index.html").read_text()
    runs = to_dataframe(results_db)
    views = sections(runs)
    assert [v.heading for v in views] == ["digits — symmetric noise", "digits_retrieval — symmetric noise"]
    tables = _tables(page)
    expected = [block.table for view in views for block in view.blocks]
    assert len(tables) == len(expected)
    final = tables[0]
    assert final["header"] == ["method", "r=0", "r=0.4", "avg rank [95 % CI]"]
    digits = runs[(runs.task == "digits") & (runs.status == "completed")]
    for row, table_row in zip(final["rows"], expected[0].rows):
        label = row[0][0]
        assert label == table_row.label
        for (text, value), rate in zip(row[1:3], (0.0, 0.4)):
            accs = digits[(digits.method == label) & (digits.noise_rate == rate)].test_acc
            assert float(value) == pytest.approx(accs.mean(), rel=1e-5)  # the sort key is the cell's mean
            # mean ± half-width of the 95 % Student-t interval over the 2 seeds (1 degree of freedom)
            half = T_975_ONE_DF * accs.std(ddof=1) / np.sqrt(2)
            assert text == f"{100 * accs.mean():.2f} ± {100 * half:.2f} (2)"
    assert "symmetric:0,0.4" not in page and "No runs stored" not in page
    assert page.count("<summary>provenance</summary>") == 10  # 8 digits runs + 2 retrieval runs
    assert "&quot;commit&quot;: &quot;" in page and "<script>" in page and "http" not in re.sub(r'xmlns="http[^"]*"', "", page)


def test_report_figures_one_line_per_row_and_cmc_only_for_retrieval(report_dir):
    figures = sorted(p.name for p in (report_dir / "figures").iterdir())
    assert "00-digits-symmetric-metrics-r0.svg" in figures  # r = 0 is drawn too
    assert "00-digits-symmetric-fit-r0.4.svg" in figures and "00-digits-symmetric-weights.svg" in figures
    assert "01-digits-retrieval-symmetric-cmc.svg" in figures and not any("digits-symmetric-cmc" in f for f in figures)
    metric = (report_dir / "figures" / "00-digits-symmetric-metrics-r0.4.svg").read_text()
    assert len(SERIES.findall(metric)) == 2 and metric.count('id="band-') == 2  # cce, gce with their seed range
    fit = (report_dir / "figures" / "00-digits-symmetric-fit-r0.4.svg").read_text()
    assert len(SERIES.findall(fit)) == 4  # clean and noisy subset, two rows each
    page = (report_dir / "index.html").read_text()
    linked = re.findall(r'<img src="(figures/[^"]+)"', page)
    assert sorted(Path(p).name for p in linked) == figures


def test_report_refuses_a_folder_it_did_not_write_and_replaces_its_own(results_db, report_dir, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["report", "--results", str(results_db), "--out", str(foreign)])
    assert result.exit_code == 2 and "not a benchsuite report" in result.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    bad = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "no results database" in bad.output
    both = CliRunner().invoke(main, ["report", "--results", str(results_db), "--curves", str(results_db), "--out", str(tmp_path / "r")])
    assert both.exit_code == 2 and "--curves goes with --from" in both.output


def test_report_from_an_export_and_from_published_means(results_db, tmp_path):
    from benchsuite.publish import compact_runs, curve_means

    runs_csv, curves_csv, means_csv = tmp_path / "runs.csv", tmp_path / "curves.csv", tmp_path / "means.csv"
    runner = CliRunner()
    assert runner.invoke(main, ["export", "--results", str(results_db), "--out", str(runs_csv), "--curves", str(curves_csv)]).exit_code == 0
    exported = runner.invoke(main, ["report", "--from", str(runs_csv), "--curves", str(curves_csv), "--out", str(tmp_path / "a"), "-t", "digits"])
    assert exported.exit_code == 0, exported.output
    svg = (tmp_path / "a" / "figures" / "00-digits-symmetric-metrics-r0.4.svg").read_text()
    assert len(SERIES.findall(svg)) == 2 and svg.count('id="band-') == 2
    runs = to_dataframe(results_db)
    compact_runs(runs).to_csv(runs_csv, index=False)
    curve_means(runs, curves_dataframe(results_db)).to_csv(means_csv, index=False)
    published = runner.invoke(main, ["report", "--from", str(runs_csv), "--curves", str(means_csv), "--out", str(tmp_path / "b")])
    assert published.exit_code == 0, published.output
    svg = (tmp_path / "b" / "figures" / "00-digits-symmetric-metrics-r0.4.svg").read_text()
    assert len(SERIES.findall(svg)) == 2 and 'id="band-' not in svg  # means only: no band
    tables_a = _tables((tmp_path / "a" / "index.html").read_text())
    tables_b = _tables((tmp_path / "b" / "index.html").read_text())
    assert tables_a[0]["rows"] == tables_b[0]["rows"]  # same numbers from either export


@pytest.mark.parametrize(
    ("args", "suffix", "lines", "size"),
    [
        (["curves", "-t", "digits"], "svg", 4, None),  # 2 rows × 2 rates (r = 0 included)
        (["curves", "-t", "digits", "--noise", "0.4", "-M", "lr"], "png", 2, (870, 555)),  # one panel: 5.8 × 3.7 in at 150 dpi
        (["fit", "-t", "digits", "--noise", "symmetric:0,0.4"], "svg", 6, None),  # clean: 2 × 2, noisy: 2 at r = 0.4
        (["cmc", "-t", "digits_retrieval"], "png", 1, (780, 540)),
        (["weights", "-t", "digits"], "svg", 2, None),
    ],
)
def test_plot_commands_draw_one_line_per_row(results_db, tmp_path, args, suffix, lines, size):
    out = tmp_path / f"figure.{suffix}"
    result = CliRunner().invoke(main, ["plot", args[0], "--results", str(results_db), *args[1:], "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f": {lines} lines written to {out}" in result.output
    if suffix == "svg":
        assert len(SERIES.findall(out.read_text())) == lines
    else:
        width, height = _png_size(out)
        assert abs(width - size[0]) <= 2 and abs(height - size[1]) <= 2, (width, height)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["curves"], "several tasks or noise kinds"),
        (["curves", "-t", "digits", "-M", "test_nope"], "no per-epoch metric test_nope"),
        (["curves", "-t", "digits", "--noise", "0.3"], "no runs at noise rate 0.3 of digits; it has 0, 0.4"),
        (["curves", "-t", "cifar10"], "no runs of task cifar10"),
        (["cmc", "-t", "digits"], "store no CMC points"),
    ],
)
def test_plot_commands_refuse_bad_input(results_db, tmp_path, args, message):
    out = tmp_path / "figure.svg"
    result = CliRunner().invoke(main, ["plot", args[0], "--results", str(results_db), *args[1:], "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


def test_plot_refuses_an_unknown_format_before_reading(tmp_path):
    result = CliRunner().invoke(main, ["plot", "curves", "--results", str(tmp_path / "x.sqlite"), "--out", str(tmp_path / "c.jpg")])
    assert result.exit_code == 2 and "must end in one of .png, .svg, .pdf" in result.output
    neither = CliRunner().invoke(main, ["plot", "weights", "--out", str(tmp_path / "w.png")])
    assert neither.exit_code == 2 and "either -m/--method" in neither.output


def test_twenty_series_differ_in_colour_or_dash_and_in_marker_or_dash():
    styles = list(series_styles([f"m{i}" for i in range(DISTINCT_SERIES)]).values())
    assert len({(s["color"], s["linestyle"]) for s in styles}) == DISTINCT_SERIES
    assert len({(s["marker"], s["linestyle"]) for s in styles}) == DISTINCT_SERIES  # apart in greyscale
    assert len({s["color"] for s in styles}) == 10 and len({s["linestyle"] for s in styles}) == 4


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with a fresh profile and
    nothing that reaches the network; the browser's console is kept for the test to read."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; CI installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def test_browser_sorts_filters_and_renders_every_figure(report_dir, browser):
    _check_page(browser, report_dir)


def _check_page(driver, report_dir: Path) -> None:
    from io import BytesIO

    from PIL import Image
    from selenium.webdriver.common.by import By

    driver.get((report_dir / "index.html").resolve().as_uri())
    severe = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert severe == [], severe

    section = driver.find_element(By.ID, "section-0")
    table = section.find_element(By.CSS_SELECTOR, "table.board")

    def column_values(index: int) -> list[float]:
        cells = table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({index + 1})")
        return [float(c.get_attribute("data-value")) for c in cells]

    initial = column_values(2)
    header = table.find_elements(By.CSS_SELECTOR, "thead th")[2]  # r=0.4
    header.click()
    assert column_values(2) == sorted(initial)
    header.click()
    assert column_values(2) == sorted(initial, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"

    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    section.find_element(By.CSS_SELECTOR, "input.method-filter").send_keys("gce")
    visible = [r.get_attribute("data-label") for r in rows if r.is_displayed()]
    assert visible == ["gce"] and len(rows) == 2
    rate_box = section.find_element(By.CSS_SELECTOR, 'input.rate-filter[value="0.4"]')
    rate_box.click()
    hidden = section.find_elements(By.CSS_SELECTOR, '[data-rate="0.4"]')
    assert hidden and not any(e.is_displayed() for e in hidden)
    assert any(e.is_displayed() for e in section.find_elements(By.CSS_SELECTOR, 'figure[data-rate="0"]'))
    rate_box.click()

    images = driver.find_elements(By.TAG_NAME, "img")
    assert len(images) == len(list((report_dir / "figures").iterdir())) >= 10
    ratio = driver.execute_script("return window.devicePixelRatio")
    for image in images:
        driver.execute_script("arguments[0].scrollIntoView()", image)
        natural = driver.execute_script("return [arguments[0].complete, arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
        assert natural[0] and natural[1] > 300 and natural[2] > 200, (image.get_attribute("src"), natural)
        shot = Image.open(BytesIO(image.screenshot_as_png)).convert("L")
        expected = (round(image.rect["width"] * ratio), round(image.rect["height"] * ratio))
        assert abs(shot.size[0] - expected[0]) <= 2 and abs(shot.size[1] - expected[1]) <= 2, (shot.size, expected)
        pixels = np.asarray(shot)
        assert (pixels < 128).mean() > 0.005, image.get_attribute("src")  # drawn lines and text, not a blank box
    severe = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert severe == [], severe
