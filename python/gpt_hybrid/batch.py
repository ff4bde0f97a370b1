"""Resumable JSONL batch jobs: ``gpt-hybrid batch IN.jsonl -o OUT.jsonl``.

Input: one JSON object per line, ``{"id": ..., "prompt": ..., <optional sampling fields>}``
(the fields of :class:`gpt_hybrid.SamplingParams`; they override the command-line defaults).
``prompt`` is a string or a list of token ids; ``id`` a string or an integer, unique.

Output: one JSON object per input line, in the order the completions finish::

    {"id": 7, "completions": ["..."], "finish_reason": ["length"],
     "usage": {"prompt_tokens": 5, "completion_tokens": 32, "total_tokens": 37}}

or, for an input line that cannot be run, an error row that names the line::

    {"id": null, "line": 12, "error": "line 12: not valid JSON (Expecting ',' ...)"}

How it survives a crash or ``kill -9``:

* every output line is written with one ``write`` on an ``O_APPEND`` descriptor, then flushed
  and ``fsync``-ed, so after a kill the file holds only whole lines, plus at worst one partial
  last line after a power loss;
* on start, the output is scanned: a partial last line is cut off, and the ids (or, for error
  rows, the line numbers) already answered are skipped;
* so every input line ends up answered exactly once, however often the job is restarted.

Requests run through the engine's continuous batching: a finished sequence frees its slot and
the next prompt takes it, and each completion is written as soon as it is done.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

# Keys of an input row that are not sampling fields.
_ROW_KEYS = ("id", "prompt")


@dataclass
class Request:
    """One runnable input line: where it came from, its key, prompt and sampling settings."""

    line: int
    id: str | int
    prompt: str | list[int]
    params: Any  # SamplingParams


@dataclass
class Summary:
    """What a run did: rows written now, rows found done, error rows (now and before), tokens."""

    written: int = 0
    skipped: int = 0
    errors: int = 0
    errors_before: int = 0
    completion_tokens: int = 0
    error_lines: list[int] = field(default_factory=list)


def row_key(row: dict[str, Any]) -> str:
    """The resume key of an output row: its id, or its line number for an error row.

    Example:
        >>> row_key({"id": 3, "completions": []}), row_key({"id": "3", "completions": []})
        ('id:3', 'id:"3"')
        >>> row_key({"id": None, "line": 9, "error": "bad"})
        'line:9'
    """
    if "error" in row:
        return f"line:{row.get('line')}"
    return "id:" + json.dumps(row.get("id"))


def scan_output(path: Path) -> set[str]:
    """Keys already answered in ``path``; cuts off a partial last line left by a crash.

    Raises:
        ValueError: a complete line of ``path`` is not a JSON object (not ours to overwrite).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> _ = p.write_text('{"id": 1, "completions": []}\\n{"id": 2, "compl')
        >>> sorted(scan_output(p)), p.read_text()
        (['id:1'], '{"id": 1, "completions": []}\\n')
    """
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        # A line without its newline was never completed: drop it, it will be redone.
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    done: set[str] = set()
    for n, raw in enumerate(data[:end].splitlines(), 1):
        try:
            row = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"{path}, line {n}: not a JSON line ({e}); not resuming") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {n}: not a JSON object; not resuming")
        done.add(row_key(row))
    return done


class LineWriter:
    """Appends whole lines to a file: one write each, flushed and fsync-ed before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, row: dict[str, Any]) -> None:
        try:
            data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (legal in JSON input): keep it escaped
            data = (json.dumps(row) + "\n").encode("ascii")
        view = memoryview(data)
        while view:  # a regular file takes it in one go; loop anyway, as write(2) allows less
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def parse_line(n: int, raw: str, defaults: dict[str, Any]) -> Request:
    """An input line as a :class:`Request`, or ``ValueError`` saying what is wrong with it.

    Example:
        >>> r = parse_line(1, '{"id": "a", "prompt": "Hi", "temperature": 0}', {})
        >>> r.id, r.prompt, r.params.temperature
        ('a', 'Hi', 0.0)
    """
    from gpt_hybrid import SamplingParams

    try:
        row = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"line {n}: not valid JSON ({e})") from None
    if not isinstance(row, dict):
        raise ValueError(f"line {n}: expected a JSON object, got {type(row).__name__}")
    if "id" not in row:
        raise ValueError(f'line {n}: no "id"')
    rid = row["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ValueError(f'line {n}: "id" must be a string or an integer, got {rid!r}')
    prompt = row.get("prompt")
    ok_ids = isinstance(prompt, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt
    )
    if not (isinstance(prompt, str) or ok_ids) or not prompt:
        raise ValueError(f'line {n}: "prompt" must be a non-empty string or list of token ids')
    settings = {**defaults, **{k: v for k, v in row.items() if k not in _ROW_KEYS}}
    try:
        params = SamplingParams.from_dict(settings)
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"line {n}: {e}") from None
    return Request(line=n, id=rid, prompt=prompt, params=params)


def read_requests(
    path: Path, done: set[str], defaults: dict[str, Any]
) -> tuple[list[Request], list[dict[str, Any]], int]:
    """Runnable requests not yet done, error rows not yet written, and how many were skipped."""
    todo: list[Request] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    skipped = 0
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # blank lines (a trailing newline, spacing) are not inputs
            try:
                try:
                    raw.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"line {n}: not UTF-8") from None
                req = parse_line(n, raw, defaults)
                key = "id:" + json.dumps(req.id)
                if key in seen:
                    raise ValueError(
                        f"line {n}: duplicate id {req.id!r} (first on line {seen[key]})"
                    )
                seen[key] = n
            except ValueError as e:
                if f"line:{n}" in done:
                    skipped += 1
                else:
                    errors.append({"id": _id_if_any(raw), "line": n, "error": str(e)})
                continue
            if key in done or f"line:{n}" in done:  # answered, or recorded as an error
                skipped += 1
            else:
                todo.append(req)
    return todo, errors, skipped


def _id_if_any(raw: str) -> Any:
    """The row's id when the line is a JSON object with a usable one (for error rows)."""
    try:
        rid = json.loads(raw).get("id")
    except (ValueError, AttributeError):
        return None
    return rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


class Progress:
    """A one-line progress bar on stderr: done/total, items/s, tokens/s, ETA.

    On a terminal it redraws in place (at most 10 times a second); otherwise (a log file) it
    prints a line every ``interval`` seconds, so logs stay readable.
    """

    def __init__(self, total: int, done: int, stream: TextIO | None = None, enabled: bool = True):
        self.total, self.done, self.start_done = total, done, done
        self.tokens = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.tty else 5.0
        self.t0 = self.last = time.monotonic()

    def update(self, items: int = 1, tokens: int = 0) -> None:
        self.done += items
        self.tokens += tokens
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or self.done == self.total):
            self.last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The text of the bar, e.g. ``37/50 [#####...]  74%  3.2 items/s  410 tok/s``."""
        elapsed = max((now or time.monotonic()) - self.t0, 1e-9)
        frac = self.done / self.total if self.total else 1.0
        width = 20
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        rate = (self.done - self.start_done) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = "--:--" if eta == float("inf") else _hms(eta)
        return (
            f"{self.done}/{self.total} [{bar}] {frac:4.0%}  {rate:.2f} items/s  "
            f"{self.tokens / elapsed:.0f} tok/s  {_hms(elapsed)} elapsed, eta {eta_s}"
        )

    def _draw(self, now: float) -> None:
        end = "\r" if self.tty and self.done < self.total else "\n"
        self.stream.write("\r" + self.line(now) + end if self.tty else self.line(now) + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and (self.done < self.total or not self.tty):
            self.stream.write(("\r" if self.tty else "") + self.line() + "\n")
            self.stream.flush()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def encode_prompt(gen, req: Request) -> list[int]:
    """The prompt's token ids, checked against the model (``ValueError`` naming the line)."""
    cfg = gen.model.config
    if isinstance(req.prompt, str):
        # As Generator.generate does: special-token text in a prompt is the special token.
        ids = gen.tokenizer.encode(req.prompt, allowed_special="all")
    else:
        ids = list(req.prompt)
        bad = [t for t in ids if not 0 <= t < cfg.vocab_size]
        if bad:
            raise ValueError(f"line {req.line}: token id {bad[0]} is outside [0, {cfg.vocab_size})")
    if len(ids) >= cfg.n_positions:
        raise ValueError(
            f"line {req.line}: the prompt has {len(ids)} tokens; the model's context window is "
            f"{cfg.n_positions}, leaving no room to generate"
        )
    return ids


def completions_as_done(
    gen, requests: list[Request], chunk: int = 4096
) -> Iterator[tuple[Request, list | ValueError]]:
    """(request, its completions) in the order they finish, through continuous batching.

    A request the model cannot take (prompt too long, bad token id) comes back at once with
    the ``ValueError`` instead. All requests of a chunk go to the engine together, so its slots
    stay full: a finished sequence is replaced by the next waiting one at once. Chunks bound
    the memory held for tokenized prompts on very large inputs.
    """
    for start in range(0, len(requests), chunk):
        part: list[Request] = []
        ids: list[list[int]] = []
        for req in requests[start : start + chunk]:
            try:
                ids.append(encode_prompt(gen, req))
            except ValueError as e:
                yield req, e
                continue
            part.append(req)
        if not part:
            continue
        pending: list[list | None] = [[None] * r.params.num_return_sequences for r in part]
        left = [r.params.num_return_sequences for r in part]
        for event in gen.engine.run(ids, [r.params for r in part]):
            if event.completion is None:
                continue
            done = pending[event.request]
            done[event.index] = event.completion
            left[event.request] -= 1
            if left[event.request] == 0:
                yield part[event.request], done
                pending[event.request] = None  # written out: let it be freed


def output_row(req: Request, completions: Iterable) -> dict[str, Any]:
    """The output line for a finished request."""
    completions = list(completions)
    prompt_tokens = len(completions[0].prompt_token_ids) if completions else 0
    generated = sum(len(c.token_ids) for c in completions)
    row: dict[str, Any] = {
        "id": req.id,
        "completions": [c.text for c in completions],
        "finish_reason": [c.finish_reason for c in completions],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "total_tokens": prompt_tokens + generated,
        },
    }
    if req.params.logprobs is not None:
        row["logprobs"] = [c.logprobs for c in completions]
        if any(getattr(c, "top_logprobs", None) for c in completions):
            row["top_logprobs"] = [c.top_logprobs for c in completions]
    return row


def run_batch(
    gen,
    input_path: Path,
    output_path: Path,
    *,
    defaults: dict[str, Any] | None = None,
    progress: bool = True,
    stderr: TextIO | None = None,
) -> Summary:
    """Answers every line of ``input_path`` not yet answered in ``output_path``.

    Args:
        gen: a :class:`gpt_hybrid.Generator`.
        input_path: JSONL prompts.
        output_path: JSONL answers, appended to (created if missing).
        defaults: sampling fields for rows that do not set them.
        progress: draw a progress bar on ``stderr``.
        stderr: where messages go (default ``sys.stderr``).

    Returns:
        A :class:`Summary` of this run.

    Example:
        >>> import gpt_hybrid as gh  # doctest: +SKIP
        >>> run_batch(gh.Generator.default(), Path("in.jsonl"), Path("out.jsonl"))  # doctest: +SKIP
        Summary(written=50, skipped=0, errors=0, errors_before=0, completion_tokens=1600, ...)
    """
    err = stderr or sys.stderr
    done = scan_output(output_path)
    todo, error_rows, skipped = read_requests(input_path, done, defaults or {})
    summary = Summary(skipped=skipped)
    # Error rows written by an earlier run still count: the output holds them.
    summary.errors_before = sum(key.startswith("line:") for key in done)
    total = skipped + len(error_rows) + len(todo)
    if skipped:
        print(f"resuming: {skipped} of {total} inputs already answered", file=err)
    writer = LineWriter(output_path)
    bar = Progress(total, skipped, stream=err, enabled=progress)

    def record_error(row: dict[str, Any]) -> None:
        print(f"gpt-hybrid batch: {input_path}: {row['error']}", file=err)
        writer.write(row)
        summary.errors += 1
        summary.error_lines.append(row["line"])
        bar.update(1)

    try:
        for row in error_rows:
            record_error(row)
        for req, result in completions_as_done(gen, todo):
            if isinstance(result, ValueError):
                record_error({"id": req.id, "line": req.line, "error": str(result)})
                continue
            row = output_row(req, result)
            writer.write(row)
            summary.written += 1
            summary.completion_tokens += row["usage"]["completion_tokens"]
            bar.update(1, row["usage"]["completion_tokens"])
    finally:
        bar.close()
        writer.close()
    print(
        f"done: {summary.written} answered now, {summary.skipped} before, "
        f"{summary.errors} error rows -> {output_path}",
        file=err,
    )
    return summary
