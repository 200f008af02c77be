"""Measure the demo adapters on held-out data and print a Markdown table with the targets.

    python scripts/measure_adapters.py            # out/full_sft_256 + out/lora/lora_{identity,medical}_256

- identity: share of greedy answers to the held-out identity questions that name the persona, with the
  identity adapter and with the base alone (and how often the base says its own name);
- medical: assistant-token loss on held-out medical Q&A, base vs medical adapter;
- retention: assistant-token loss on held-out general chat, base vs each adapter. The few held-out
  conversations about the base's own identity (those that mention its name) are left out: changing those
  answers is the identity adapter's job, not a loss of general ability.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.lm_dataset import SFTDataset
from model.common import repo_path, run_cli
from model.fast_paths import enable_fast_paths
from model.loading import adapter_path, load_adapter, load_base, load_tokenizer
from model.model_lora import adapter_active
from trainer.config import add_device_flags, base_model_parser
from trainer.evaluation import assistant_token_loss, expect_rate, first_user_turns
from trainer.runtime import autocast, resolve_device, resolve_dtype


def without_word(path: Path, word: str, out_dir: Path) -> Path:
    """A copy of a JSONL file without the lines that contain word."""
    out = out_dir / path.name
    with open(path, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        g.writelines(line for line in f if word not in line)
    return out


def measure(args: argparse.Namespace) -> dict:
    """All figures as a dict (losses, rates, relative changes)."""
    device = resolve_device(args.device)
    tokenizer = load_tokenizer(args.tokenizer_path)
    save_dir = repo_path(args.save_dir)
    model, _ = load_base(save_dir, args.weight, args.hidden_size, 0, tokenizer, device)
    for name in ("lora_identity", "lora_medical"):
        load_adapter(model, adapter_path(save_dir, name, args.hidden_size))
    enable_fast_paths(model)
    general = without_word(repo_path(args.general_eval), args.base_name, Path(tempfile.mkdtemp()))
    data = {"medical": SFTDataset(repo_path(args.medical_eval), tokenizer, 340),
            "general": SFTDataset(general, tokenizer, 340)}
    prompts = first_user_turns(repo_path(args.identity_eval))
    out: dict = {"identity_questions": len(prompts)}
    with autocast(device, resolve_dtype(args.dtype, device)):
        with adapter_active(model, None):
            out["base_names_persona"] = expect_rate(model, tokenizer, prompts, args.persona)
            out["base_names_itself"] = expect_rate(model, tokenizer, prompts, args.base_name)
            out["base_medical_loss"] = assistant_token_loss(model, data["medical"])[0]
            out["base_general_loss"] = assistant_token_loss(model, data["general"])[0]
        with adapter_active(model, "lora_identity"):
            out["identity_names_persona"] = expect_rate(model, tokenizer, prompts, args.persona)
            out["identity_general_loss"] = assistant_token_loss(model, data["general"])[0]
        with adapter_active(model, "lora_medical"):
            out["medical_medical_loss"] = assistant_token_loss(model, data["medical"])[0]
            out["medical_general_loss"] = assistant_token_loss(model, data["general"])[0]
    out["medical_loss_drop"] = 1 - out["medical_medical_loss"] / out["base_medical_loss"]
    out["identity_retention_rise"] = out["identity_general_loss"] / out["base_general_loss"] - 1
    out["medical_retention_rise"] = out["medical_general_loss"] / out["base_general_loss"] - 1
    return out


def table(m: dict, persona: str, base_name: str) -> str:
    """The figures as Markdown, each against its target."""
    def row(what: str, value: str, target: str, met: bool) -> str:
        return f"| {what} | {value} | {target} | {'met' if met else 'missed'} |"

    n = m["identity_questions"]
    return "\n".join([
        "| measure | value | target | |",
        "| --- | --- | --- | --- |",
        row(f"{n} held-out identity questions naming {persona}, with lora_identity",
            f"{100 * m['identity_names_persona']:.1f}% ({round(m['identity_names_persona'] * n)}/{n})", ">= 90%",
            m["identity_names_persona"] >= 0.9),
        row(f"... naming {persona}, base alone (base names {base_name} in {100 * m['base_names_itself']:.0f}%)",
            f"{100 * m['base_names_persona']:.0f}%", "<= 10%", m["base_names_persona"] <= 0.1),
        row("held-out medical Q&A loss, base -> lora_medical",
            f"{m['base_medical_loss']:.3f} -> {m['medical_medical_loss']:.3f} "
            f"(-{100 * m['medical_loss_drop']:.0f}%)", ">= 25% lower", m["medical_loss_drop"] >= 0.25),
        row("held-out general chat loss with lora_identity (base " f"{m['base_general_loss']:.3f})",
            f"{m['identity_general_loss']:.3f} ({100 * m['identity_retention_rise']:+.1f}%)", "<= +10%",
            m["identity_retention_rise"] <= 0.1),
        row("held-out general chat loss with lora_medical",
            f"{m['medical_general_loss']:.3f} ({100 * m['medical_retention_rise']:+.1f}%)", "<= +10%",
            m["medical_retention_rise"] <= 0.1),
    ])


def main() -> None:
    parser = base_model_parser(__doc__)
    add_device_flags(parser)
    parser.add_argument("--identity_eval", default="dataset/lora_identity_eval.jsonl")
    parser.add_argument("--medical_eval", default="dataset/lora_medical_eval.jsonl")
    parser.add_argument("--general_eval", default="dataset/sft_demo_eval.jsonl")
    parser.add_argument("--persona", default="Nova")
    parser.add_argument("--base_name", default="Pebble")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    figures = measure(args)
    print(table(figures, args.persona, args.base_name))
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    run_cli(main)
