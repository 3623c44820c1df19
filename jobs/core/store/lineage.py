"""A build's lineage: what makes two builds' numbers comparable. Two builds are of one lineage when they were
measured on the same suite (by the sha256 of its file) with the same base model; then a drop in a score is a
regression of the build, not a change of the ruler. The documents may change within a lineage (that is what a
new build is for): they are shown, never refused.
"""

from __future__ import annotations

from jobs.core.spec.suite import load_suite


def of_spec(spec) -> dict:
    """{suite_sha256, suite, base_model} of the build a spec describes (its suite file as it is now)."""
    suite = load_suite(spec.eval.suite)
    return {"suite_sha256": suite.sha256, "suite": suite.name, "base_model": spec.base_model.id}


def of_manifest(manifest: dict) -> dict:
    """The same for a committed build; manifests from before lineage was recorded have no suite hash (None)."""
    suite = manifest.get("suite") or {}
    return {"suite_sha256": suite.get("sha256"), "suite": suite.get("name"), "base_model": manifest.get("base_model")}


def same(a: dict, b: dict) -> bool:
    return bool(a["suite_sha256"]) and a["suite_sha256"] == b["suite_sha256"] and a["base_model"] == b["base_model"]


def differences(mine: dict, other: dict, other_tag: str) -> list[str]:
    """What makes a comparison with `other_tag` not like for like, in words (empty when it is)."""
    out = []
    if mine["suite_sha256"] != other["suite_sha256"]:
        theirs = f"suite {other['suite']} ({other['suite_sha256'][:12]})" if other["suite_sha256"] else \
            "a suite it did not record"
        out.append(f"{other_tag} was measured on {theirs}, this build on suite {mine['suite']} "
                   f"({(mine['suite_sha256'] or '?')[:12]}): the scores are on different questions")
    if mine["base_model"] != other["base_model"]:
        out.append(f"{other_tag} fine-tuned base model {other['base_model']}, this build {mine['base_model']}")
    return out


def changed_sources(before: list[dict] | None, after: list[dict] | None) -> dict:
    """{added, removed, changed}: document paths between two builds' `sources` ([{path, sha256, bytes}])."""
    old = {s["path"]: s["sha256"] for s in before or []}
    new = {s["path"]: s["sha256"] for s in after or []}
    return {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
            "changed": sorted(p for p in set(old) & set(new) if old[p] != new[p])}


def sources_line(diff: dict) -> str:
    """One line for the terminal ("" when the documents are the same)."""
    parts = [f"{len(diff[k])} {k} ({', '.join(diff[k][:3])}{' ...' if len(diff[k]) > 3 else ''})"
             for k in ("added", "removed", "changed") if diff[k]]
    return "documents since then: " + "; ".join(parts) if parts else ""


def _flat(data, prefix: str = "") -> dict:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def spec_differences(a: dict, b: dict) -> list[str]:
    """`key: A-value -> B-value` for every setting two resolved specs (manifest `spec`) differ in, the name aside."""
    fa, fb = _flat(a), _flat(b)
    return [f"{k}: {fa.get(k, '(unset)')} -> {fb.get(k, '(unset)')}" for k in sorted(set(fa) | set(fb))
            if k not in ("name", "source_file") and fa.get(k) != fb.get(k)]
