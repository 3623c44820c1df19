"""Question-answer pairs a user already has, as extra training examples: every `.jsonl` file under the sources,
one JSON object a line, `{"question": ..., "answer": ...[, "source": ...]}`. Each pair becomes one example
(template `qa-pair`, origin `user`) that always trains (it is no paragraph of a document, so never held out)
and goes through the same leakage check as every example, so a pair that copies an eval question is removed.
Its paragraph id is `<file>#qa#p<line>`. A line that is not such an object is bad input naming the file and line.
(`make new QA=file.jsonl` takes such a file as eval questions instead.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from jobs.core.store.dataset_folder import example_id
from jobs.core.spec.qa_pairs import QA_SUFFIX, QaError, read_pairs
from jobs.curate.blocks import BadInput
from jobs.curate.documents import display_path



def qa_files(sources: list[Path]) -> list[tuple[Path, Path]]:
    """(file, its source folder) for every .jsonl under the sources (hidden files aside), sorted."""
    out = []
    for root in sources:
        files = [root] if root.is_file() else sorted(root.rglob(f"*{QA_SUFFIX}"))
        base = root.parent if root.is_file() else root
        out += [(p, base) for p in files if p.suffix.lower() == QA_SUFFIX and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(base).parts)
                and p.resolve().is_relative_to(base.resolve())]
    return out


def qa_examples(sources: list[Path], system_prompt: str | None, on_bad_input: str) -> tuple[list[dict], list[dict],
                                                                                                list[dict]]:
    """(example rows, files read [{path, sha256, bytes}], skipped [{path, reason}])."""
    rows, files, skipped = [], [], []
    for path, root in qa_files(sources):
        rel = display_path(path, root)
        try:
            pairs = read_pairs(path)
        except QaError as exc:
            if on_bad_input == "fail":
                raise BadInput(path, exc.reason) from None
            skipped.append({"path": rel, "reason": exc.reason})
            continue
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        files.append({"path": rel, "sha256": sha, "bytes": len(data)})
        for n, pair in pairs:
            messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": pair["question"]}, {"role": "assistant", "content": pair["answer"]}]
            rows.append({"id": example_id(messages), "messages": messages, "template": "qa-pair", "origin": "user",
                         "writer": "", "source_path": rel, "source_sha256": sha, "section": pair["source"],
                         "paragraph_ids": [f"{rel}#qa#p{n}"], "keywords": []})
    return rows, files, skipped
