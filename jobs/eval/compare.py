"""python -m jobs.eval.compare [--a TAG] [--b TAG] [--arm ARM]      (also: python -m jobs.eval.compare A B)

Prints the report's comparison of two builds in the terminal: what differs in their specs and documents, headline
metrics, knowledge diagnostics, per-topic scores and the questions B lost or gained against A with both answers.
Each build's report/metrics.json comes from the store (QSLM_STORE) through its manifest, checked against the sha256
there. --b defaults to the newest complete build; --a to B's previous build: the promoted one when it is of B's
lineage (same suite by hash, same base model), else the latest of that lineage made before B; a build is never
compared with itself, and a comparison across suites or base models says so. --arm compares one eval arm of
both builds (adapter by default; adapter+retrieval, base+retrieval or base where the builds measured them). What
`make compare A=v1 B=v2 [ARM=adapter+retrieval]` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from jobs.core.errors import QslmError
from jobs.core.store import lineage
from jobs.core.store.registry import complete_tags, previous_build, read_artifact_file, read_manifest
from jobs.core.store.backends import open_store
from jobs.core.spec.metrics import ARM_PREFIX, ARMS, DIAGNOSTICS, GATED
from jobs.eval.diagnose import RIGHT_CONCEPT_RECALL, RIGHT_SIMILARITY, question_diff
from jobs.eval.report import comparison_rows, fmt, pct, signed

ANSWER_CHARS = 300  # of each answer in the question-level diff


class CompareError(QslmError):
    pass


def latest_tag(store) -> str | None:
    manifests = [read_manifest(store, t) for t in complete_tags(store)]
    return max(manifests, key=lambda m: m.get("created_at") or "")["tag"] if manifests else None


def load_metrics(store, tag: str) -> dict:
    """The build's report/metrics.json, found through its manifest and checked against the sha256 there."""
    return json.loads(read_artifact_file(store, tag, "report", "metrics.json"))


def pick(store, a_tag: str | None, b_tag: str | None) -> tuple[str, str]:
    """(A, B): B defaults to the newest complete build, A to B's previous build of its lineage; never one build
    twice."""
    b_tag = b_tag or latest_tag(store)
    if b_tag is None:
        raise CompareError(f"the store {store.url} has no complete builds yet; run `make build VERSION=...`")
    a_tag = a_tag or previous_build(store, b_tag, of=read_manifest(store, b_tag))
    if a_tag is None:
        raise CompareError(f"{b_tag} has no previous build of its lineage (same suite, same base model) in "
                           f"{store.url}; name one: make compare A=<tag> B={b_tag} (complete builds: "
                           f"{', '.join(complete_tags(store))})")
    if a_tag == b_tag:
        raise CompareError(f"A and B are both {b_tag}: a build compared with itself shows nothing; name another "
                           f"build as A (complete builds: {', '.join(complete_tags(store))})")
    return a_tag, b_tag


def provenance_text(a_tag: str, a: dict, b_tag: str, b: dict) -> str:
    """What makes the builds differ besides the model: lineage, spec settings, documents (from the manifests)."""
    out = [f"NOT LIKE FOR LIKE: {d}" for d in lineage.differences(lineage.of_manifest(b), lineage.of_manifest(a),
                                                                    a_tag)]
    changes = lineage.spec_differences(a.get("spec") or {}, b.get("spec") or {})
    out.append(f"spec differences {a_tag} -> {b_tag}: " + ("none" if not changes else ""))
    out += [f"  {c}" for c in changes[:40]] + ([f"  ... and {len(changes) - 40} more"] if len(changes) > 40 else [])
    docs = lineage.sources_line(lineage.changed_sources(a.get("sources"), b.get("sources")))
    out.append(docs or "documents: the same")
    return "\n".join(out)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells):  # first column left-aligned (names), the rest right-aligned (numbers)
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def comparison_text(a_tag: str, a: dict, b_tag: str, b: dict, provenance: str = "") -> str:
    """Build b against build a: headline, adapter-vs-base of each, and per-topic recall/similarity; `provenance`
    (provenance_text) goes under the heading."""
    out = [f"compare {a_tag} (A) -> {b_tag} (B)   suite A: {a['suite']['name']} ({a['suite']['sha256'][:12]}), "
           f"suite B: {b['suite']['name']} ({b['suite']['sha256'][:12]})"]
    if a["suite"]["sha256"] != b["suite"]["sha256"]:
        out.append("note: the builds were evaluated on different suite files; differences mix model and questions")
    if provenance:
        out.append(provenance)
    for tag, m in ((a_tag, a), (b_tag, b)):
        out.append(f"gate {tag}: {'passed' if m['gate']['passed'] else 'FAILED'}")
    rows = comparison_rows(b["headline"], a["headline"])
    base_b = {r["metric"]: r for r in comparison_rows(b["headline"], b["headline"], "base_")}
    out.append("")
    out.append(_table(["metric", f"A {a_tag}", f"B {b_tag}", "B - A", "", f"B vs its base"],
                      [[r["label"], fmt(r["old"], r["metric"]), fmt(r["new"], r["metric"]), signed(r["delta"]),
                        r["verdict"], signed(base_b[r["metric"]]["delta"])] for r in rows]))
    topics = sorted(set(a.get("topics", {})) | set(b.get("topics", {})))
    if topics:
        def score(m, topic, name):
            t = m.get("topics", {}).get(topic)
            return None if t is None else t["adapter"][name]["mean"]
        trows = []
        for t in topics:
            ra, rb = score(a, t, "concept_recall"), score(b, t, "concept_recall")
            sa, sb = score(a, t, "similarity"), score(b, t, "similarity")
            trows.append([t, fmt(ra), fmt(rb), signed(None if ra is None or rb is None else rb - ra),
                          fmt(sa), fmt(sb), signed(None if sa is None or sb is None else sb - sa)])
        out += ["", _table(["topic", "recall A", "recall B", "change", "similarity A", "similarity B", "change"],
                           trows)]
    drows = [r for r in comparison_rows(b["headline"], a["headline"], "", DIAGNOSTICS)
             if r["new"] is not None or r["old"] is not None]
    if drows:
        out += ["", _table(["diagnostic", f"A {a_tag}", f"B {b_tag}", "B - A", ""],
                           [[r["label"], pct(r["old"]), pct(r["new"]), signed(r["delta"]), r["verdict"]]
                            for r in drows])]
    return "\n".join(out + ["", diff_text(a_tag, b_tag, question_diff(a.get("questions", []),
                                                                     b.get("questions", [])))])


def diff_text(a_tag: str, b_tag: str, diff: dict) -> str:
    """The questions B lost (right in A, wrong in B) and gained, each with both answers."""
    out = [f"questions: {len(diff['lost'])} lost, {len(diff['gained'])} gained, {diff['still_right']} right in "
           f"both, {diff['still_wrong']} wrong in both (right: concept recall >= {RIGHT_CONCEPT_RECALL}, "
           f"similarity >= {RIGHT_SIMILARITY}, no abstention; an abstain item: abstains)"]
    for kind, items in (("lost", diff["lost"]), ("gained", diff["gained"])):
        for c in items:
            out.append(f"\n{kind}: {c['id']} [{c['topic']}] {c['question']}")
            for tag, side in ((a_tag, c["previous"]), (b_tag, c["current"])):
                answer = textwrap.shorten(side["answer"] or "(empty)", ANSWER_CHARS)
                out.append(textwrap.fill(f"{tag} (recall {fmt(side['concept_recall'])}, similarity "
                                         f"{fmt(side['similarity'])}): {answer}", 110, initial_indent="  ",
                                         subsequent_indent="    "))
    for label, ids in (("only in B", diff["new_questions"]), ("only in A", diff["dropped_questions"])):
        if ids:
            out.append(f"{label}: {', '.join(ids)}")
    return "\n".join(out)


def arm_view(metrics: dict, arm: str, tag: str) -> dict:
    """The metrics with the headline's plain names standing for `arm`'s values (ARM_PREFIX), for one comparison."""
    if arm == "adapter":
        return metrics
    prefix = ARM_PREFIX[arm]
    if not any(k.startswith(prefix) for k in metrics["headline"]):
        raise CompareError(f"build {tag} has no {arm} arm in its report (its spec has no `retrieval:` section)")
    headline = dict(metrics["headline"]) | {k[len(prefix):]: v for k, v in metrics["headline"].items()
                                            if k.startswith(prefix) and k[len(prefix):] in GATED}
    return metrics | {"headline": headline}


def arms_text(tag: str, metrics: dict) -> str:
    arms = metrics.get("arms")
    if not arms:
        return ""
    winners = ", ".join(f"{t}: {a}" for t, a in arms["winners"].items())
    return f"{tag}: ship {arms['ship']} (best right rate); per topic: {winners}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.eval.compare", description=__doc__.split("\n\n")[1])
    p.add_argument("tags", nargs="*", metavar="TAG", help="A and B as positional arguments (optional)")
    p.add_argument("--a", help="the baseline build (default: B's previous build of the same lineage)")
    p.add_argument("--b", help="the build to judge (default: the newest complete build)")
    p.add_argument("--arm", default="adapter", choices=ARMS, help="the eval arm to compare (default: adapter)")
    args = p.parse_args(argv)
    if len(args.tags) > 2:
        p.error("give at most two tags: A B")
    if len(args.tags) == 1 and not (args.a or args.b):  # one tag: that build against its previous one
        a_tag, b_tag = None, args.tags[0]
    else:
        a_tag = args.a or (args.tags[0] if args.tags else None)
        b_tag = args.b or (args.tags[1] if len(args.tags) > 1 else None)
    try:
        store = open_store()
        a_tag, b_tag = pick(store, a_tag, b_tag)
        provenance = provenance_text(a_tag, read_manifest(store, a_tag), b_tag, read_manifest(store, b_tag))
        a, b = load_metrics(store, a_tag), load_metrics(store, b_tag)
        if args.arm != "adapter":
            print(f"arm: {args.arm} (the headline rows below are that arm's)")
        print(comparison_text(a_tag, arm_view(a, args.arm, a_tag), b_tag, arm_view(b, args.arm, b_tag), provenance))
        for line in (arms_text(a_tag, a), arms_text(b_tag, b)):
            if line:
                print(line)
    except QslmError as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
