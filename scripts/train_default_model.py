#!/usr/bin/env python
"""Train the small default model shipped in the wheel (python/gpt_hybrid/assets/).

What it does, in order, all keyed by one seed:

1. reads ``english/`` and ``shakespeare/`` from the shared corpus and holds out the last
   ``--val-fraction`` of every file as the validation split (the tokenizer never sees it);
2. trains a byte-level BPE tokenizer on the training split with our own trainer
   (:func:`gpt_hybrid.train_bpe`), with ``<|endoftext|>`` as the last id;
3. trains a GPT-2-architecture model (:class:`gpt_hybrid.GPT2`) on random windows of the
   tokenized training split (AdamW, linear warm-up then cosine decay, gradient clipping),
   logging train and validation loss;
4. writes ``config.json``, ``model.safetensors``, the tokenizer files and ``training.json``
   (the arguments and the losses) to ``--out``. The assets are rewritten at every evaluation,
   so an interrupted run still leaves a usable model behind.

The run is reproducible: the same seed, arguments and thread count give the same weights
(CPU float32; the number of threads changes the order of floating-point sums).

Example (the shipped model; about an hour on one core of this 2-core machine)::

    PYTHONPATH=python nohup python scripts/train_default_model.py > train.log 2>&1 &

A quick smoke run::

    PYTHONPATH=python python scripts/train_default_model.py --steps 20 --eval-every 10 \\
        --max-chars 2000000 --out /tmp/tiny-model
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
EOT = "<|endoftext|>"
# Shipped as generation_config.json (HF's file; the CLI reads it). A model this small reads
# best sampled a little cool, from its top tokens, with a mild repetition penalty (picked by
# reading samples of the shipped run at temperatures 0.2-1.0; see docs/default_model.md).
GENERATION_DEFAULTS = {
    "max_new_tokens": 64,
    "temperature": 0.5,
    "top_k": 40,
    "top_p": 0.9,
    "repetition_penalty": 1.2,
}


def find_corpus() -> Path:
    """The shared corpus: $GPT_HYBRID_CORPUS, ../shared/corpus or /work/shared/corpus."""
    env = os.environ.get("GPT_HYBRID_CORPUS")
    if env:
        return Path(env)
    for cand in (REPO.parent / "shared" / "corpus", Path("/work/shared/corpus")):
        if cand.is_dir():
            return cand
    raise SystemExit("corpus not found: set GPT_HYBRID_CORPUS")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=None, help="corpus root (english/, shakespeare/)")
    p.add_argument("--out", type=Path, default=REPO / "python" / "gpt_hybrid" / "assets")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--val-fraction", type=float, default=0.01, help="tail of each file held out")
    p.add_argument("--max-chars", type=int, default=0, help="cap per file (0: all), for smoke runs")
    p.add_argument(
        "--bpe-trainer", choices=["ours", "hf"], default="ours", help="hf: fallback only"
    )
    p.add_argument("--vocab-size", type=int, default=4096, help="including <|endoftext|>")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-ctx", type=int, default=128, help="context length (n_positions)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-batches", type=int, default=16)
    return p.parse_args(argv)


def log(msg: str) -> None:
    """One timestamped line on stdout, flushed (the run is watched through a nohup log)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_split(corpus: Path, val_fraction: float, max_chars: int) -> tuple[list[str], list[str]]:
    """Training and validation texts: the tail of every file (cut at a line) is validation."""
    train, val = [], []
    files = sorted((corpus / "english").glob("*.txt")) + sorted(
        (corpus / "shakespeare").glob("*.txt")
    )
    if not files:
        raise SystemExit(f"no .txt files under {corpus}/english or {corpus}/shakespeare")
    for path in files:
        text = path.read_text(encoding="utf-8")
        if max_chars:
            text = text[:max_chars]
        cut = text.rfind("\n", 0, int(len(text) * (1 - val_fraction))) + 1
        train.append(text[:cut])
        val.append(text[cut:])
    return train, val


def tokenize_split(tok, texts: list[str], eot_id: int) -> np.ndarray:
    """All texts as one id stream, each document followed by <|endoftext|>."""
    ids: list[int] = []
    for doc in tok.encode_ordinary_batch(texts):
        ids.extend(doc)
        ids.append(eot_id)
    return np.asarray(ids, dtype=np.int64)


def batch_at(data: torch.Tensor, starts: torch.Tensor, n_ctx: int):
    """Inputs and next-token targets for windows starting at ``starts``: (B, T) each."""
    idx = starts[:, None] + torch.arange(n_ctx + 1)[None, :]  # (B, T+1)
    win = data[idx]
    return win[:, :-1], win[:, 1:]


@torch.no_grad()
def evaluate(model, data: torch.Tensor, args: argparse.Namespace) -> float:
    """Mean next-token loss over fixed, evenly spaced windows (the same at every evaluation)."""
    model.eval()
    n_windows = args.eval_batches * args.batch_size
    last = len(data) - args.n_ctx - 1
    starts = torch.linspace(0, last, n_windows).long()
    losses = []
    for chunk in starts.split(args.batch_size):
        x, y = batch_at(data, chunk, args.n_ctx)
        logits = model(x)
        losses.append(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item())
    model.train()
    return float(np.mean(losses))


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))


def model_config(args: argparse.Namespace, eot_id: int) -> dict:
    """A Hugging Face GPT-2 config.json: the same file loads in gpt_hybrid and transformers."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": args.vocab_size,
        "n_positions": args.n_ctx,
        "n_embd": args.n_embd,
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
    }


def train_tokenizer(texts: list[str], vocab_size: int, trainer: str = "ours"):
    """A byte-level BPE tokenizer, GPT-2 pre-tokenization, <|endoftext|> as the last id.

    ``trainer="ours"`` is :func:`gpt_hybrid.train_bpe`. ``trainer="hf"`` (Hugging Face
    tokenizers' BpeTrainer) exists only as a fallback for when ours is unavailable; the
    shipped model records which one made it in ``training.json``.
    """
    if trainer == "hf":
        return HFTokenizer.train(texts, vocab_size)
    import gpt_hybrid as gh

    return gh.train_bpe(texts, vocab_size, pattern="gpt2", special_tokens=[EOT])


class HFTokenizer:
    """The few ``gpt_hybrid.Tokenizer`` methods this script uses, over HF tokenizers."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.n_vocab = tok.get_vocab_size()
        self.eot_token = tok.token_to_id(EOT)

    @classmethod
    def train(cls, texts: list[str], vocab_size: int) -> HFTokenizer:
        """BpeTrainer with GPT-2's byte-level settings; ``<|endoftext|>`` gets the last id.

        Its ids are laid out as ``train_bpe``'s: the 256 bytes in GPT-2's order (the order of
        their stand-in characters), then the merges in the order learned.
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - 1,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        tok.add_special_tokens([EOT])  # after the merges: it gets the last id
        return cls(tok)

    def encode_ordinary_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts)]

    def save_pretrained(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.tok.save(str(Path(path) / "tokenizer.json"))
        self.tok.model.save(str(path))  # vocab.json + merges.txt

    def __repr__(self) -> str:
        return f"HFTokenizer(n_vocab={self.n_vocab})"


def build_model(config: dict) -> torch.nn.Module:
    """Our trainable GPT-2 (weights initialised under the global torch seed)."""
    import gpt_hybrid as gh

    return gh.GPT2(gh.GPT2Config.from_dict(config))


def save_assets(model, tok, config: dict, meta: dict, out: Path) -> None:
    """Write the model, tokenizer and training record to ``out``.

    Everything is written into a scratch folder first and then renamed file by file, so a run
    killed while saving never leaves a half-written file in ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".saving"
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    tok.save_pretrained(scratch)
    # Our config.json: the Hugging Face GPT-2 form, which transformers loads as well.
    (scratch / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (scratch / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    gen_cfg = {**GENERATION_DEFAULTS, "bos_token_id": config["bos_token_id"]}
    gen_cfg["eos_token_id"] = config["eos_token_id"]
    (scratch / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
    for f in sorted(scratch.iterdir()):
        os.replace(f, out / f.name)
    scratch.rmdir()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    corpus = args.corpus or find_corpus()
    log(f"args: {vars(args)}")

    train_texts, val_texts = read_split(corpus, args.val_fraction, args.max_chars)
    n_train = sum(map(len, train_texts))
    n_val = sum(map(len, val_texts))
    log(f"corpus {corpus}: {len(train_texts)} files, {n_train:,} train / {n_val:,} val chars")

    t0 = time.time()
    eot_id = args.vocab_size - 1
    tok = train_tokenizer(train_texts, args.vocab_size, args.bpe_trainer)
    log(f"tokenizer: {tok!r} trained in {time.time() - t0:.1f}s")
    if tok.n_vocab != args.vocab_size or tok.eot_token != eot_id:
        raise SystemExit(f"tokenizer has n_vocab={tok.n_vocab}, eot={tok.eot_token}")

    train_ids = torch.from_numpy(tokenize_split(tok, train_texts, eot_id))
    val_ids = torch.from_numpy(tokenize_split(tok, val_texts, eot_id))
    log(
        f"tokens: {len(train_ids):,} train / {len(val_ids):,} val "
        f"({n_train / len(train_ids):.2f} chars per token)"
    )

    config = model_config(args, eot_id)
    model = build_model(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    # A generator of its own, so the windows drawn do not depend on other torch calls.
    gen = torch.Generator().manual_seed(args.seed)
    history: list[dict] = []
    meta = {
        "seed": args.seed,
        "bpe_trainer": args.bpe_trainer,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "parameters": n_params,
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "torch": torch.__version__,
        "history": history,
    }
    model.train()
    t_start = time.time()
    running = 0.0
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            val_loss = evaluate(model, val_ids, args)
            train_loss = running / args.eval_every if step else None
            elapsed = time.time() - t_start
            history.append(
                {"step": step, "train_loss": train_loss, "val_loss": val_loss, "seconds": elapsed}
            )
            log(
                f"step {step:5d} | train loss {train_loss or float('nan'):.4f} "
                f"| val loss {val_loss:.4f} "
                f"| {elapsed / 60:.1f} min"
            )
            meta.update(steps_done=step, val_loss=val_loss, train_seconds=elapsed)
            save_assets(model, tok, config, meta, args.out)
            running = 0.0
            if step == args.steps:
                break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        high = len(train_ids) - args.n_ctx - 1
        starts = torch.randint(0, high, (args.batch_size,), generator=gen)
        x, y = batch_at(train_ids, starts, args.n_ctx)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        running += loss.item()
        if step % 20 == 0:
            rate = (step + 1) * args.batch_size * args.n_ctx / (time.time() - t_start)
            log(
                f"step {step:5d} | loss {loss.item():.4f} | lr {lr_at(step, args):.2e} "
                f"| {rate:,.0f} tok/s"
            )
    log(f"done: val loss {history[-1]['val_loss']:.4f}; assets in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
