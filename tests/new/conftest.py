"""A researcher's own documents that are not about quantum computing (a beekeeper's notes in Markdown, HTML and
Word), in a folder outside the checkout, for `make new` and `make review`."""

from __future__ import annotations

import shutil
from pathlib import Path

import docx
import pytest

from jobs.core.repo import BUILDS_DIR

NOTES = """# Apiary notes

These notes record how the three colonies of the hillside apiary were kept through one season, what went wrong with
the queens and the varroa mites, and what the honey harvest finally weighed.

## Varroa mites

Varroa destructor is a parasitic mite that feeds on the fat body of larvae and adult bees and spreads deformed wing
virus through the colony. An untreated colony usually collapses within two or three years of infestation.

We count mites with an alcohol wash of three hundred bees from a brood frame. A count above nine mites per wash in
late summer means the colony needs treatment before the winter bees are raised.

Oxalic acid dribbled between the frames in the broodless period of midwinter kills most phoretic mites, because
no mites are hidden under capped brood cells at that time.

## Queens and swarming

A colony raises new queens in swarm cells along the bottom edge of the frames when it runs out of space in spring.
Removing the old queen with half of the workers into a new box, an artificial swarm, keeps the bees in the apiary.

A virgin queen takes her mating flights about a week after she emerges, and she starts laying eggs two or three
days after her last flight; a queen that lays only drone brood was poorly mated.

## Harvest

The spring harvest of oilseed rape honey granulated within two weeks in the jars, so it was creamed by stirring
it once a day until it set smooth. The summer lime honey stayed liquid for months.

Supers were cleared with a porter bee escape placed under them the evening before, which let the bees go down into
the brood box overnight without any smoke or blowing.
"""

PAGE = """<html><body><h1>Wintering the colonies</h1>
<p>Each colony was left about twenty kilograms of stores in the brood box for the winter, checked by hefting the
back of the hive in October and topped up with thick sugar syrup where it felt light.</p>
<p>Mouse guards went on the entrances at the first frost, because mice nest in the warm corner of a hive and chew
through the comb while the cluster is too cold to defend it.</p>
<h2>Ventilation</h2>
<p>Condensation dripping onto the winter cluster kills more colonies than cold does; an open mesh floor and a small
gap under the roof let the damp air out without a draught across the bees.</p>
</body></html>"""


def write_docx(path: Path) -> None:
    d = docx.Document()
    d.add_heading("Equipment", 1)
    d.add_paragraph("National hives with fourteen by twelve brood boxes gave the queens enough room to lay, so the "
                    "colonies swarmed far less than in the smaller standard brood boxes of the year before.")
    d.add_paragraph("Foundationless frames with a starter strip of wax let the bees draw natural comb, which is "
                    "cheaper than wired foundation and gives drone comb that can be cut out to trap varroa mites.")
    d.save(path)


@pytest.fixture
def notes(tmp_path) -> Path:
    """A folder of documents outside the checkout: Markdown, HTML, Word, and a hidden file that is not copied."""
    folder = tmp_path / "beekeeping"
    folder.mkdir()
    (folder / "apiary.md").write_text(NOTES, encoding="utf-8")
    (folder / "wintering.html").write_text(PAGE, encoding="utf-8")
    write_docx(folder / "equipment.docx")
    (folder / ".draft.swp").write_text("editor swap file")
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    """A data/ folder of the test's own (builds/, eval/, raw/), so make new never writes into the checkout."""
    root = tmp_path / "data"
    (root / "builds").mkdir(parents=True)
    shutil.copy(BUILDS_DIR / "smoke.yaml", root / "builds" / "smoke.yaml")
    return root
