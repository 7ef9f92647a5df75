"""The repository is self-contained: no file points outside it, and what the code cites is here."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT

#: A reference to something outside a checkout: a sibling folder of the repository, or an absolute
#: path of the machine the code was written on.
OUTSIDE = re.compile(r"\.\./shared|shared/reference|(?<![\w.~])/(?:work|home|Users|root|mnt)/")


def tracked_text_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [p for p in listed if p.endswith((".py", ".md", ".toml", ".ini", ".txt", ".cfg", ".yml", ".yaml"))]


def test_no_file_points_outside_the_repository():
    files = tracked_text_files()
    assert "tests/test_metrics.py" in files and "docs/reference.md" in files
    offenders = []
    for path in files:
        if path == "tests/test_self_contained.py":  # it spells the pattern out
            continue
        for number, line in enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path}:{number}: {line.strip()}")
    assert offenders == []


def test_the_pattern_catches_what_it_is_for():
    sibling_notes = "../" + "shared/reference/methods.md"  # in two pieces: no line here names the file
    assert OUTSIDE.search(f"see ``{sibling_notes}`` §9")
    assert OUTSIDE.search('Path("/work/shared/data.npz")')
    assert not OUTSIDE.search("-t \"imdb{root = '/data/aclImdb'}\"")  # a user's data folder in an example


def test_cited_sections_exist():
    """Every ``docs/reference.md`` §N cited in the code is a section of that file."""
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "reference.md").read_text(encoding="utf-8"), re.M))
    cited = set()
    for path in tracked_text_files():
        text = (ROOT / path).read_text(encoding="utf-8")
        cited |= set(re.findall(r"docs/reference\.md``?\s*§(\d+)", text))
    assert cited >= {"5", "6", "7"} and cited <= sections
