"""The ``gpt-hybrid`` command line (also ``python -m gpt_hybrid``).

Subcommands:

* ``generate``  — complete prompts given as arguments or read from stdin (one per line);
* ``batch``     — JSONL in, JSONL out, resumable (see :mod:`gpt_hybrid.batch`);
* ``tokenize``  — token ids (or token strings) of texts or files;
* ``count``     — number of tokens of texts or files, like ``wc``;
* ``info``      — version, model, device and threads.

Every command uses the small model shipped in the package unless ``--model DIR`` is given.
Exit status: 0 success, 1 error (message on stderr, no traceback: set ``GPT_HYBRID_DEBUG=1``
to see one), 2 bad command line, 3 a batch job finished with some error rows, 130 interrupted.
Heavy imports (torch) happen only in the commands that need them, so ``--help``, ``tokenize``
and ``count`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_ROW_ERRORS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# 128 + SIGPIPE, what a shell reports for a writer whose reader went away (`... | head`).
EXIT_BROKEN_PIPE = 141

# Sampling flags shared by `generate` and `batch`: (flag, SamplingParams field, type, help).
SAMPLING_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--max-new-tokens", "max_new_tokens", int, "tokens to generate at most per completion"),
    ("--temperature", "temperature", float, "softmax temperature; 0 = greedy"),
    ("--top-k", "top_k", int, "keep the k most likely tokens (0 = off)"),
    ("--top-p", "top_p", float, "nucleus sampling: smallest set with mass >= p (1 = off)"),
    ("--min-p", "min_p", float, "drop tokens below min_p x the top probability (0 = off)"),
    ("--repetition-penalty", "repetition_penalty", float, "HF's repetition penalty (1 = off)"),
    ("--presence-penalty", "presence_penalty", float, "OpenAI-style presence penalty"),
    ("--frequency-penalty", "frequency_penalty", float, "OpenAI-style frequency penalty"),
    ("--seed", "seed", int, "random seed (same seed, same output)"),
    ("-n", "num_return_sequences", int, "completions per prompt"),
    ("--logprobs", "logprobs", int, "also return the top-N logprobs per token (with --json)"),
]


class UserError(Exception):
    """A mistake of the user's (bad file, bad argument): reported in one line, no traceback."""


def _sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "sampling (defaults: the model's generation_config.json, else max 64 new tokens and "
        "plain sampling at temperature 1)"
    )
    for flag, dest, typ, help_ in SAMPLING_FLAGS:
        names = [flag, "--num-return-sequences"] if flag == "-n" else [flag]
        g.add_argument(*names, dest=dest, type=typ, default=None, help=help_)
    g.add_argument(
        "--stop", action="append", default=None, metavar="TEXT", help="stop string (repeatable)"
    )
    g.add_argument(
        "--ignore-eos", action="store_true", default=None, help="keep going past end-of-text"
    )


# Fields of a model's generation_config.json (Hugging Face's file) that the CLI honours.
_GENERATION_KEYS = (
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "num_return_sequences",
)
# Without a generation_config.json: enough text to read, and the engine's other defaults.
_FALLBACK_DEFAULTS = {"max_new_tokens": 64}


def generation_defaults(model_dir: Path) -> dict[str, Any]:
    """Sampling defaults from ``model_dir/generation_config.json`` (HF's format), if any.

    ``do_sample: false`` means greedy (temperature 0). Unknown keys are ignored, as HF does.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "generation_config.json").write_text('{"top_k": 40, "eos_token_id": 3}')
        >>> generation_defaults(d)
        {'max_new_tokens': 64, 'top_k': 40}
    """
    path = Path(model_dir) / "generation_config.json"
    out = dict(_FALLBACK_DEFAULTS)
    if not path.is_file():
        return out
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a JSON object")
    out.update({k: cfg[k] for k in _GENERATION_KEYS if cfg.get(k) is not None})
    if cfg.get("do_sample") is False:
        out["temperature"] = 0.0
    return out


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling fields set on the command line (unset flags are left to the defaults).

    Example:
        >>> ns = argparse.Namespace(temperature=0.0, top_k=None, stop=None, ignore_eos=None)
        >>> sampling_overrides(ns)
        {'temperature': 0.0}
    """
    names = [dest for _, dest, _, _ in SAMPLING_FLAGS] + ["stop", "ignore_eos"]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _model_args(p: argparse.ArgumentParser, *, runtime: bool = True) -> None:
    p.add_argument("--model", metavar="DIR", help="model directory (default: the built-in model)")
    if runtime:
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
        p.add_argument(
            "--dtype",
            default=None,
            choices=["float32", "bfloat16", "float16"],
            help="weights dtype",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``gpt-hybrid`` argument parser (all subcommands).

    Example:
        >>> build_parser().parse_args(["count", "hello"]).command
        'count'
    """
    from gpt_hybrid import __version__

    parser = argparse.ArgumentParser(
        prog="gpt-hybrid",
        description="GPT-2 text generation: a Rust tokenizer and sampler, a PyTorch engine.",
        epilog="Exit status: 0 ok, 1 error, 2 bad usage, 3 batch finished with error rows, "
        "130 interrupted. GPT_HYBRID_DEBUG=1 shows tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"gpt-hybrid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "generate",
        help="complete prompts",
        description="Complete prompts given as arguments, or read from stdin (one per line).",
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompt text ('-' reads stdin)")
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--json", action="store_true", help="one JSON object per completion")
    p.add_argument("--no-echo", dest="echo", action="store_false", help="print only the completion")
    _sampling_args(p)
    _model_args(p)

    p = sub.add_parser(
        "batch",
        help="JSONL prompts in, JSONL completions out (resumable)",
        description='Each input line: {"id": ..., "prompt": ..., optional sampling fields}. '
        "Each output line: id, completions, finish_reason, usage. Rerunning the same command "
        "after a crash or kill skips the ids already answered.",
    )
    p.add_argument("input", type=Path, metavar="IN.jsonl")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.jsonl")
    p.add_argument("--max-batch-size", type=int, default=None, help="sequences decoded together")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _sampling_args(p)
    _model_args(p)

    for name, help_ in (("tokenize", "token ids of texts or files"), ("count", "count tokens")):
        p = sub.add_parser(
            name,
            help=help_,
            description=f"{help_[0].upper()}{help_[1:]}. "
            "Texts come from the arguments, --file, or stdin.",
        )
        p.add_argument("texts", nargs="*", metavar="TEXT")
        p.add_argument(
            "-f", "--file", action="append", default=[], type=Path, help="read a file (repeatable)"
        )
        p.add_argument(
            "--tokenizer", metavar="PATH", help="tokenizer dir, tokenizer.json or .tiktoken file"
        )
        _model_args(p, runtime=False)
        if name == "tokenize":
            p.add_argument("--tokens", action="store_true", help="show token strings, not ids")
            p.add_argument("--json", action="store_true", help="one JSON list per input")

    p = sub.add_parser("info", help="version, model, device and threads")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _model_args(p)
    return parser


# ---------------------------------------------------------------------------- loading


def load_generator(args: argparse.Namespace):
    """The model named by ``--model`` (or the built-in one) as a ``Generator``."""
    from gpt_hybrid import Generator

    kwargs = {k: v for k in ("device", "dtype") if (v := getattr(args, k, None)) is not None}
    if getattr(args, "max_batch_size", None):
        kwargs["max_batch_size"] = args.max_batch_size
    if args.model:
        return Generator.from_pretrained(args.model, **kwargs)
    return Generator.default(**kwargs)


def load_tokenizer(args: argparse.Namespace):
    """The tokenizer named by ``--tokenizer``, else ``--model``'s, else the built-in one's."""
    from gpt_hybrid import Tokenizer

    if args.tokenizer and args.model:
        raise UserError("give --tokenizer or --model, not both")
    if args.tokenizer:
        path = Path(args.tokenizer)
        if path.suffix == ".tiktoken":
            return Tokenizer.from_tiktoken(path)
        if path.is_file() and path.suffix == ".json":
            path = path.parent
        return Tokenizer.from_pretrained(path)
    if args.model:
        return Tokenizer.from_pretrained(args.model)
    return Tokenizer.from_pretrained(default_model_dir())


def model_dir(args: argparse.Namespace) -> Path:
    """The directory of the model the command uses."""
    return Path(args.model) if args.model else default_model_dir()


def default_model_dir() -> Path:
    """Where the model shipped in the package lives.

    Example:
        >>> default_model_dir().name
        'assets'
    """
    return Path(__file__).resolve().parent / "assets"


def _stdin_lines() -> list[str]:
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("no prompt: give one as an argument or pipe prompts into stdin")
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def _texts(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(label, text) for every TEXT argument, --file, or stdin when there are neither."""
    for i, t in enumerate(args.texts):
        yield f"arg{i + 1}", t
    for path in args.file:
        try:
            yield str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not args.texts and not args.file:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("nothing to read: give TEXT, --file, or pipe text into stdin")
        yield "-", sys.stdin.read()


# ---------------------------------------------------------------------------- commands


def cmd_generate(args: argparse.Namespace) -> int:
    from gpt_hybrid import SamplingParams

    prompts = [p for p in args.prompts if p != "-"]
    if not args.prompts or "-" in args.prompts:
        prompts += _stdin_lines()
    if not prompts:
        raise UserError("no prompt: stdin was empty")
    # Settings are checked before the model loads, so a bad flag fails at once.
    settings = {**generation_defaults(model_dir(args)), **sampling_overrides(args)}
    params = SamplingParams.from_dict(settings)
    gen = load_generator(args)
    out = sys.stdout
    if args.stream:
        if params.num_return_sequences != 1:
            raise UserError("--stream gives one completion per prompt; drop -n")
        for i, prompt in enumerate(prompts):
            if i:
                out.write("\n")
            if args.echo:
                out.write(prompt)
            for piece in gen.stream(prompt, params=params):
                out.write(piece)
                out.flush()
            out.write("\n")
        return EXIT_OK
    completions = gen.generate(prompts, params=params)
    per_prompt = params.num_return_sequences
    for i, c in enumerate(completions):
        prompt = prompts[i // per_prompt]
        if args.json:
            row = {
                "prompt": prompt,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "token_ids": list(c.token_ids),
            }
            if c.logprobs is not None:
                row["logprobs"] = c.logprobs
            if getattr(c, "top_logprobs", None) is not None:
                row["top_logprobs"] = c.top_logprobs
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            if i:
                out.write("\n")
            out.write((prompt if args.echo else "") + c.text + "\n")
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from gpt_hybrid import SamplingParams
    from gpt_hybrid.batch import run_batch

    if not args.input.is_file():
        raise UserError(f"{args.input}: no such file")
    if args.input.resolve() == args.output.resolve():
        raise UserError("the output file must not be the input file")
    defaults = {**generation_defaults(model_dir(args)), **sampling_overrides(args)}
    SamplingParams.from_dict(defaults)  # a bad flag fails before the model loads
    gen = load_generator(args)
    summary = run_batch(gen, args.input, args.output, defaults=defaults, progress=args.progress)
    # Exit 3 while the output holds error rows, from this run or an earlier one.
    return EXIT_ROW_ERRORS if summary.errors or summary.errors_before else EXIT_OK


def cmd_tokenize(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args)
    for _, text in _texts(args):
        ids = tok.encode_ordinary(text)
        if args.tokens:
            toks = [tok.decode_single_token_bytes(i).decode("utf-8", "replace") for i in ids]
            line = json.dumps(toks, ensure_ascii=False) if args.json else " ".join(map(repr, toks))
        else:
            line = json.dumps(ids) if args.json else " ".join(map(str, ids))
        sys.stdout.write(line + "\n")
    return EXIT_OK


def cmd_count(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args)
    labelled = list(_texts(args))
    counts = [len(i) for i in tok.encode_ordinary_batch([t for _, t in labelled])]
    if len(labelled) == 1 and not args.file:
        print(counts[0])
        return EXIT_OK
    for (label, _), n in zip(labelled, counts, strict=True):
        print(f"{n:>10} {label}")
    if len(labelled) > 1:
        print(f"{sum(counts):>10} total")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from gpt_hybrid.info import collect_info, format_info

    info = collect_info(args)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return EXIT_OK


COMMANDS = {
    "generate": cmd_generate,
    "batch": cmd_batch,
    "tokenize": cmd_tokenize,
    "count": cmd_count,
    "info": cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Example:
        >>> main(["count", "Hello world"])  # doctest: +SKIP
        2
        0
    """
    args = build_parser().parse_args(argv)
    debug = os.environ.get("GPT_HYBRID_DEBUG", "") not in ("", "0")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("gpt-hybrid: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`gpt-hybrid tokenize ... | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (UserError, OSError, ValueError, KeyError, TypeError) as e:
        # Library errors name the file/argument at fault; a user needs that line, not a stack.
        if debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"gpt-hybrid {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
