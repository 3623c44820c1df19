"""Question-answer pairs a user already has: a `.jsonl` file, one JSON object a line,
`{"question": "...", "answer": "..."[, "source": "..."]}`. Curate trains on the pairs under its sources
(jobs/curate/qa.py); `make new QA=file.jsonl` takes a file of them as eval questions.
"""

from __future__ import annotations

import json
from pathlib import Path

from jobs.core.errors import QslmError

QA_SUFFIX = ".jsonl"
MAX_CHARS = 8000  # per question or answer: a longer one is not a question-answer pair
MAX_PAIRS = 20000  # per file
MAX_BYTES = 64 << 20  # 64 MiB: far more than MAX_PAIRS sane pairs


class QaError(QslmError):
    """A question-answer file that cannot be read; names the file, the line and the fix."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def read_pairs(path: Path) -> list[tuple[int, dict]]:
    """(line number, {question, answer, source}) of every pair; BadInput for the first line that is not one."""
    if path.stat().st_size > MAX_BYTES:
        raise QaError(path, f"{path.stat().st_size / 2**20:.0f} MiB, more than the {MAX_BYTES >> 20} MiB a file of "
                            f"question-answer pairs may have; split it")
    data = path.read_bytes()
    pairs = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QaError(path, f"line {n} is not JSON ({exc.msg}); each line must be one object "
                                 f'{{"question": "...", "answer": "..."}}') from None
        ok = isinstance(obj, dict) and all(isinstance(obj.get(k), str) and obj[k].strip() and
                                           len(obj[k]) <= MAX_CHARS for k in ("question", "answer"))
        if not ok or not isinstance(obj.get("source", ""), str) or set(obj) - {"question", "answer", "source"}:
            raise QaError(path, f"line {n}: expected {{\"question\": \"...\", \"answer\": \"...\"[, \"source\": "
                                 f"\"...\"]}} with non-empty strings of at most {MAX_CHARS:,} characters")
        pairs.append((n, {"question": obj["question"].strip(), "answer": obj["answer"].strip(),
                          "source": obj.get("source", "").strip()}))
        if len(pairs) > MAX_PAIRS:
            raise QaError(path, f"more than {MAX_PAIRS:,} pairs; split the file")
    return pairs
