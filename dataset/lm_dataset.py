"""JSONL training data: pretraining text and chat conversations, tokenized once, padded per batch.

- `{"text": "..."}` lines -> PretrainDataset: <|im_start|> text <|im_end|>, every token is a target.
- `{"conversations": [{"role", "content"}, ...]}` lines -> SFTDataset: rendered with the tokenizer's chat
  template; only assistant replies and their closing <|im_end|> are targets. Text inside a message stays plain
  text even where it spells a control token (model.chat.encode_chats), so data cannot forge a turn.
Files are checked line by line first, so a bad line is reported with its number instead of a parser trace.
A UTF-8 byte-order mark at the start of a file (as some editors write) is skipped.
"""
import json
from pathlib import Path
from typing import Optional

import torch

from model.chat import encode_chats, is_text
from model.common import PebbleError

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")


def check_line(obj, kind: str) -> Optional[str]:
    """Describe what is wrong with one parsed JSONL record of the given kind, or None if it is usable."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if kind == "text":
        if "text" not in obj:
            return 'missing the "text" field'
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            return '"text" must be a non-empty string'
        if not is_text(obj["text"]):
            return '"text" holds half of a surrogate pair (an escape such as \\ud800 alone), which is not text'
        return None
    conv = obj.get("conversations")
    if conv is None:
        return 'missing the "conversations" field'
    if not isinstance(conv, list) or not conv:
        return '"conversations" must be a non-empty list of {"role", "content"} objects'
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or "content" not in turn:
            return f'turn {i} must be an object with "role" and "content"'
        if turn["role"] not in ROLES:
            return f"turn {i} has unknown role {turn['role']!r} (expected one of {', '.join(ROLES)})"
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            return f"turn {i} ({turn['role']}) has empty or non-string content"
        if not is_text(turn["content"]):
            return (f"turn {i} ({turn['role']}) holds half of a surrogate pair (an escape such as \\ud800 alone), "
                    "which is not text")
    if not any(t["role"] == "assistant" for t in conv):
        return "the conversation has no assistant turn, so there is nothing to learn from it"
    return None


def read_jsonl(path: Path, kind: str, skip_bad_lines: bool = False) -> tuple[list, list[str]]:
    """Parse and check every line of a JSONL file -> (the records' "text" or "conversations" values, problems).

    A bad line raises PebbleError naming the file and line, unless skip_bad_lines: then it is left out and
    described in the returned problems.
    """
    if not path.is_file():
        raise PebbleError(f"{path} does not exist; pass an existing JSONL file with --data_path")
    records, problems = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")  # -sig: skip a byte-order mark
                if not line.strip():
                    continue
                obj = json.loads(line)
                problem = check_line(obj, kind)
            except UnicodeDecodeError:
                problem = "the line is not valid UTF-8; re-save the file as UTF-8"
            except json.JSONDecodeError as e:
                problem = f"not valid JSON ({e.msg} at column {e.colno})"
            if problem is None:
                records.append(obj["text"] if kind == "text" else
                               [{"role": t["role"], "content": t["content"]} for t in obj["conversations"]])
            elif skip_bad_lines:
                problems.append(f"{path.name}:{n}: {problem}")
            else:
                raise PebbleError(f"{path}:{n}: {problem} (or pass --skip_bad_lines 1 to skip such lines)")
    if not records:
        raise PebbleError(f"{path} holds no usable records; it must have one JSON object per line")
    return records, problems


def assistant_labels(ids: list[int], start: list[int], end_id: int) -> list[int]:
    """Labels for one tokenized conversation: the tokens after each `start` marker up to and including
    the next end_id; everything else IGNORE_INDEX."""
    labels = [IGNORE_INDEX] * len(ids)
    i, n = 0, len(start)
    while i + n <= len(ids):
        if ids[i:i + n] == start:
            j = i + n
            while j < len(ids) and ids[j] != end_id:
                labels[j] = ids[j]
                j += 1
            if j < len(ids):
                labels[j] = end_id
            i = j + 1
        else:
            i += 1
    return labels


class TokenizedJsonl(torch.utils.data.Dataset):
    """A checked JSONL file, tokenized once up front (not at every step) and held as one int32 tensor per sample."""

    kind = ""
    chunk = 1000  # records tokenized at a time: the Python lists of a whole large file would not fit in memory

    def __init__(self, data_path, tokenizer, max_seq_len: int = 340, skip_bad_lines: bool = False,
                 sample: Optional[tuple[int, int]] = None, exclude: str = ""):
        """sample=(n, seed) keeps a seeded random n of the records (all if fewer), before tokenizing; records
        whose text contains `exclude` (if given) are left out first."""
        self.path = Path(data_path)
        self.max_seq_len = max_seq_len
        records, self.skipped = read_jsonl(self.path, self.kind, skip_bad_lines)
        if exclude:
            records = [r for r in records if exclude not in json.dumps(r, ensure_ascii=False)]
        if sample is not None:
            keep = torch.randperm(len(records), generator=torch.Generator().manual_seed(sample[1]))[:sample[0]]
            records = [records[i] for i in sorted(keep.tolist())]
        self.input_ids: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        for start in range(0, len(records), self.chunk):
            columns = self.tokenize({self.kind: records[start:start + self.chunk]}, tokenizer)
            self.input_ids += [torch.tensor(x, dtype=torch.int32) for x in columns["input_ids"]]
            self.labels += [torch.tensor(x, dtype=torch.int32) for x in columns["labels"]]
        self.num_truncated = sum(len(x) > max_seq_len for x in self.input_ids)
        self.lengths = [min(len(x), max_seq_len) for x in self.input_ids]

    def tokenize(self, batch: dict, tokenizer) -> dict:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        n = self.max_seq_len
        return {"input_ids": self.input_ids[i][:n].tolist(), "labels": self.labels[i][:n].tolist()}


class PretrainDataset(TokenizedJsonl):
    """{"text"} lines -> bos + tokens + eos; every token is a target."""

    kind = "text"

    def tokenize(self, batch: dict, tokenizer) -> dict:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        ids = [[tokenizer.bos_token_id] + x + [tokenizer.eos_token_id] for x in ids]
        return {"input_ids": ids, "labels": ids}


class SFTDataset(TokenizedJsonl):
    """{"conversations"} lines -> chat-template tokens; targets are the assistant replies only."""

    kind = "conversations"

    def tokenize(self, batch: dict, tokenizer) -> dict:
        ids = encode_chats(tokenizer, batch["conversations"])
        start = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        labels = [assistant_labels(x, start, tokenizer.eos_token_id) for x in ids]
        return {"input_ids": ids, "labels": labels}


class ConcatDatasets(torch.utils.data.Dataset):
    """Several tokenized datasets as one (e.g. task data plus replayed general chat), with their lengths.

    Each sample carries "source", a number naming where it came from (by default its part's index), so a loss
    can treat them differently. A part may appear several times (each time a full copy of its samples).
    """

    def __init__(self, parts: list[TokenizedJsonl], sources: Optional[list[int]] = None):
        sources = list(range(len(parts))) if sources is None else sources
        self.index = [(k, d, i) for k, d in zip(sources, parts) for i in range(len(d))]
        self.lengths = [n for d in parts for n in d.lengths]
        self.num_truncated = sum(d.num_truncated for d in parts)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        source, dataset, j = self.index[i]
        return {**dataset[j], "source": source}


class PadCollator:
    """Pad a list of samples to the longest one in the batch (never to max_seq_len), rounded up to a multiple
    of pad_multiple. The trainers round only in bf16 and fp16 (trainer.runtime.pad_multiple), where kernels are
    prepared and cached per shape, so a few shapes are faster and use far less memory than a new length at
    every step."""

    def __init__(self, pad_id: int = 0, max_seq_len: Optional[int] = None, pad_multiple: int = 1):
        self.pad_id = pad_id
        self.max_seq_len = max_seq_len
        self.pad_multiple = pad_multiple

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        n = max(len(s["input_ids"]) for s in samples)
        n = -(-n // self.pad_multiple) * self.pad_multiple
        if self.max_seq_len:
            n = min(n, self.max_seq_len)
        ids = torch.full((len(samples), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), n), dtype=torch.long)
        for i, s in enumerate(samples):
            k = min(len(s["input_ids"]), n)
            ids[i, :k] = torch.tensor(s["input_ids"][:k])
            labels[i, :k] = torch.tensor(s["labels"][:k])
            mask[i, :k] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if "source" in samples[0]:
            batch["source"] = torch.tensor([s["source"] for s in samples])  # (B,) which part each row came from
        return batch
