"""Train Pebble's byte-level BPE tokenizer on JSONL text and write it where AutoTokenizer can load it.

    python trainer/train_tokenizer.py --data_path dataset/pretrain_demo.jsonl dataset/sft_demo.jsonl

Special tokens come first so their ids are fixed: 0 <|endoftext|> (pad/unk), 1 <|im_start|> (bos),
2 <|im_end|> (eos). The chat template is ChatML, the format MiniMind's tokenizer uses.
"""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from model.common import PebbleError, repo_path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML: each turn is <|im_start|>{role}\n{content}<|im_end|>\n; the generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def iter_texts(paths: list[Path]) -> Iterator[str]:
    """Yield the text of every {"text"} line and every turn of every {"conversations"} line."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PebbleError(f"{path}:{n}: not valid JSON ({e.msg})") from e
                if "text" in obj:
                    yield obj["text"]
                for turn in obj.get("conversations", []):
                    yield turn["content"]


def train_tokenizer(paths: list[Path], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE with fixed special-token ids and wrap it for transformers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    tok.train_from_iterator(iter_texts(paths), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"special token {t} got id {tok.token_to_id(t)}"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def portable_tokenizer_config(directory: Path) -> None:
    """Name a tokenizer class that every transformers version in requirements.txt has (5.x writes its own
    TokenizersBackend, which 4.x lacks) and the only inputs the model takes."""
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("backend", None)
    config.update(tokenizer_class="PreTrainedTokenizerFast", model_input_names=["input_ids", "attention_mask"])
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", nargs="+", default=["dataset/pretrain_demo.jsonl", "dataset/sft_demo.jsonl"],
                        help="JSONL files with {'text'} or {'conversations'} lines")
    parser.add_argument("--vocab_size", type=int, default=6400)
    parser.add_argument("--tokenizer_path", default="model", help="output directory")
    args = parser.parse_args()
    paths = [repo_path(p) for p in args.data_path]
    for p in paths:
        if not p.is_file():
            raise PebbleError(f"{p} does not exist; build the demo data with python dataset/build_demo_data.py")
    tokenizer = train_tokenizer(paths, args.vocab_size)
    out = repo_path(args.tokenizer_path)
    tokenizer.save_pretrained(out)
    portable_tokenizer_config(out)
    print(f"wrote a {len(tokenizer)}-token tokenizer to {out}")


if __name__ == "__main__":
    try:
        main()
    except PebbleError as e:
        sys.exit(f"error: {e}")
