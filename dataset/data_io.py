"""Write the data builders' JSONL files so that the training loader is sure to accept them, and read the
held-out prompts that no builder may write.

Every row is checked with the loader's own rule (dataset/lm_dataset.check_line) before anything is written, and
conversations must also take turns: an optional system turn, then user/assistant pairs. Lines are UTF-8 JSON with
LF endings, written to a .tmp file that replaces the target only when complete.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from dataset.lm_dataset import check_line

HELDOUT_DIR = Path(__file__).resolve().parent / "heldout"


def jsonl_line(row: object) -> str:
    """One row as it stands in a file: UTF-8 JSON (not ASCII-escaped) and a newline."""
    return json.dumps(row, ensure_ascii=False) + "\n"


def conversation_problem(messages: object) -> str | None:
    """What is wrong with one conversation, or None: the loader's check, then user/assistant pairs in turn."""
    problem = check_line({"conversations": messages}, "conversations")
    if problem:
        return problem
    body = messages[1:] if messages[0]["role"] == "system" else messages
    for i, turn in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if turn["role"] != expected:
            return f"turn {i} has role {turn['role']!r} where {expected!r} belongs (after an optional system turn)"
    if len(body) % 2:
        return "the conversation ends with a user turn"
    return None


def row_problem(row: object) -> str | None:
    """What is wrong with one {"text"} or {"conversations"} row, or None."""
    if isinstance(row, dict) and "conversations" in row:
        return conversation_problem(row["conversations"])
    return check_line(row, "text")


def write_jsonl(path: Path, rows: Iterable[object]) -> int:
    """Check every row, then write them all to path; return the number of lines. Raises ValueError on a bad row."""
    rows = list(rows)
    for n, row in enumerate(rows, 1):
        problem = row_problem(row)
        if problem:
            raise ValueError(f"{path}: row {n}: {problem}; fix the builder that made it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(jsonl_line(row) for row in rows)
    os.replace(tmp, path)
    return len(rows)


def heldout_set_prompts() -> list[str]:
    """The prompts of dataset/heldout/*.jsonl (what scripts/measure_answers.py asks): no training file may hold them."""
    return [json.loads(line)["prompt"] for path in sorted(HELDOUT_DIR.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
