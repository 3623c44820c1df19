"""Selection (keywords, context, overrides), duplicates, leakage and the section-grouped split."""

from __future__ import annotations

from collections import Counter

import pytest

from jobs.core.spec.suite import parse_suite
from jobs.core.text.leakage import LeakageCheck, leakage
from jobs.core.text.neardup import dedup
from jobs.curate import examples, select, split
from jobs.curate.run import dedup_examples
from jobs.curate.blocks import CurateError
from jobs.curate.documents import load_documents
from tests.curate.conftest import curate_spec

DOC = """# Kernels

A quantum kernel is a similarity measure: it compares two data points by the overlap of the quantum states that a
feature map prepares for them.

```python
k = FidelityKernel(feature_map)
```

Short one.

## Noise

Depolarizing noise shrinks every kernel value towards the same constant, which makes the Gram matrix less useful.

# Dinner

This paragraph talks about cooking pasta and has nothing to do with the domain at all, but it is long enough.
"""


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "k.md").write_text(DOC)
    return load_documents([tmp_path], "skip")[0]


def test_keyword_patterns_match_words_plurals_and_hyphens():
    pats = select.keyword_patterns(("feature map", "kernel", "NISQ"))
    assert select.keyword_hits("Feature-maps and kernels on NISQ devices", pats) == ["feature map", "kernel", "NISQ"]
    assert select.keyword_hits("kernelized nisqueness", pats) == []


def test_selection_with_context_in_the_same_section(docs, smoke_spec):
    spec = curate_spec(smoke_spec, min_paragraph_chars=60)
    counts = Counter()
    chosen = select.select(docs, spec.curate, None, counts).selected
    by_id = {s.paragraph.id.rsplit("#", 1)[-1] + "@" + s.paragraph.section: s for s in chosen}
    assert set(by_id) == {"p0@Kernels", "p0@Kernels > Noise"}
    first = by_id["p0@Kernels"]
    assert first.before == [] and [p.kind for p in first.after] == ["code"]
    assert by_id["p0@Kernels > Noise"].before == []  # context never crosses a section boundary
    assert counts["skipped_short"] == 1 and counts["skipped_no_keyword"] == 1


def test_overrides_pin_and_drop(docs, smoke_spec, tmp_path):
    ids = [p.id for p in docs[0].paragraphs]
    pasta = next(p.id for p in docs[0].paragraphs if "pasta" in p.text)
    kernel = ids[0]
    ov = tmp_path / "overrides.yaml"
    ov.write_text(f"pin: ['{pasta}']\ndrop: ['{kernel}']\n")
    spec = curate_spec(smoke_spec, min_paragraph_chars=60, overrides=str(ov))
    chosen = {s.paragraph.id: s.reason for s in select.select(docs, spec.curate, None, Counter()).selected}
    assert chosen[pasta] == "pinned" and kernel not in chosen
    ov.write_text("pin: ['nope#x#p0']\n")
    with pytest.raises(CurateError, match="nope#x#p0"):
        select.select(docs, spec.curate, None, Counter())


def test_examples_are_grounded_and_carry_provenance(docs, smoke_spec):
    spec = curate_spec(smoke_spec, min_paragraph_chars=60)
    chosen = select.select(docs, spec.curate, None, Counter()).selected
    rows = [r for s in chosen for r in examples.make_examples(s, spec.curate.templates, "Be brief.", 0)]
    templates = {r["template"] for r in rows}
    assert {"explain", "define", "relate", "engineer"} <= templates
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant"] and r["messages"][0]["content"].startswith("Be brief.")
        assert r["source_path"].endswith("k.md") and len(r["source_sha256"]) == 64 and r["paragraph_ids"]
        sources = [p.text for d in docs for p in d.paragraphs if p.id in r["paragraph_ids"]]
        for sentence in r["messages"][-1]["content"].split("\n\n"):
            assert any(sentence.strip() in s or all(part in " ".join(sources) for part in sentence.split(". "))
                       for s in sources), sentence
    engineer = next(r for r in rows if r["template"] == "engineer")
    assert "```python\nk = FidelityKernel(feature_map)\n```" in engineer["messages"][-1]["content"]
    define = next(r for r in rows if r["template"] == "define")
    assert define["messages"][1]["content"].lower().rstrip("?.").endswith("quantum kernel")


def test_exact_and_near_duplicates():
    a = ("Quantum kernels measure the overlap of two encoded states on a quantum computer; the estimate needs many "
         "shots, and on noisy hardware the values concentrate, so error mitigation and careful feature map design "
         "matter for every experiment that uses a support vector machine on top of the kernel matrix.")
    items = [{"id": "a", "t": a}, {"id": "b", "t": a.upper()}, {"id": "c", "t": a.replace("many", "several")},
             {"id": "d", "t": "Noise channels are described by Kraus operators that sum to the identity."}]
    kept, removed = dedup(items, lambda x: x["t"], lambda x: x["id"], 0.7)
    assert [k["id"] for k in kept] == ["a", "d"]
    assert {(r["id"], r["kind"]) for r in removed} == {("b", "exact"), ("c", "near")}
    rows, n = dedup_examples([{"id": "x"}, {"id": "x"}, {"id": "y"}])
    assert [r["id"] for r in rows] == ["x", "y"] and n == 1


def test_leakage_removes_training_examples_that_copy_eval_answers():
    reference = "The kernel value is the fraction of shots that return the all-zeros bitstring."
    suite = parse_suite({"name": "t", "questions": [{"id": "qk-03", "question": "How is a kernel entry estimated?",
                                                     "reference": reference, "concepts": ["shots"], "topic": "k"}]}, "t")
    leak = {"id": "1", "paragraph_ids": ["d#s#p0"],
            "messages": [{"role": "user", "content": "Explain it."},
                         {"role": "assistant", "content": "In practice, " + reference + " More shots help."}]}
    clean = {"id": "2", "paragraph_ids": ["d#s#p1"],
             "messages": [{"role": "user", "content": "Explain noise."},
                          {"role": "assistant", "content": "Depolarizing noise flattens the kernel matrix."}]}
    kept, removed = leakage([leak, clean], LeakageCheck([suite], 0.85))
    assert [r["id"] for r in kept] == ["2"]
    assert removed[0]["eval_question"] == "qk-03" and removed[0]["field"] == "reference" and removed[0]["suite"] == "t"


def test_split_keeps_each_section_on_one_side():
    rows = [{"id": f"{s}{i}", "paragraph_ids": [f"doc.md#sec{s}#p{i}"]} for s in range(10) for i in range(3)]
    held = split.split_rows(rows, 0.2, seed=0)
    assert held.by == "section" and len(held.sections) == 2 and len(held.evals) == 6 and len(held.train) == 24
    assert not {split.section_key(r) for r in held.train} & {split.section_key(r) for r in held.evals}
    assert split.split_rows(rows, 0.2, seed=0).sections == held.sections
    # sections the suite asks about are never held out
    guarded = split.split_rows(rows, 0.2, 0, {f"{s}#p0" for s in held.sections})
    assert not set(guarded.sections) & set(held.sections) and "2 section(s) the eval suite asks about" in guarded.note


def test_few_sections_split_by_paragraph_and_never_train_on_held_out_context():
    # two sections of 5 paragraphs; each example quotes its neighbours as context
    rows = [{"id": f"{s}{i}", "paragraph_ids": [f"d.md#s{s}#p{i}"] + [f"d.md#s{s}#p{j}" for j in (i - 1, i + 1)
                                                                      if 0 <= j < 5]}
            for s in range(2) for i in range(5)]
    held = split.split_rows(rows, 0.2, seed=0, protected={"d.md#s0#p0"})
    assert held.by == "paragraph" and len(held.paragraphs) == 2 and "d.md#s0#p0" not in held.paragraphs
    assert "fewer than 5" in held.note and held.sections == []
    assert {r["paragraph_ids"][0] for r in held.evals} == set(held.paragraphs)
    assert not any(set(r["paragraph_ids"]) & set(held.paragraphs) for r in held.train)
    assert held.left_out == len(rows) - len(held.train) - len(held.evals) > 0
    assert held.held(held.paragraphs[0]) and not held.held("d.md#s0#p0")