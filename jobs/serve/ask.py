"""Ask a build one question, or chat with it in the terminal.

    python -m jobs.serve.ask --tag smoke -q "What is a quantum kernel?"   # `make ask VERSION=smoke Q="..."`
    python -m jobs.serve.ask [--tag TAG]                                  # `make ask [VERSION=TAG]`: a chat

Without --tag it uses the promoted `current` build. A one-shot answer goes to stdout alone (what was loaded
goes to stderr), so it can be piped; the chat streams tokens and keeps the conversation (commands: /help).
"""

from __future__ import annotations

import argparse
import sys

from jobs.core.errors import QslmError
from jobs.core.engine.loading import gpu_memory_errors
from jobs.core.store.backends import open_store
from jobs.serve import ServeError
from jobs.serve.builds import describe, load_engine, open_build, pick_tags
from jobs.core.retrieval.rag import format_sources
from jobs.serve.chat import Chat, TooLong
from jobs.serve.retrieval import Retriever, with_index

PROMPT = "you> "
MAX_ARG_CHARS = 1_000_000  # -q and --system; the context check then counts tokens


def _write_stream(chunks, out) -> str:
    texts = []
    try:
        for text in chunks:
            texts.append(text)
            out.write(text)
            out.flush()
    except KeyboardInterrupt:  # Ctrl-C stops this answer, not the chat
        out.write("  (interrupted)")
    out.write("\n")
    return "".join(texts)


def _note(chat: Chat, text: str) -> str:
    """What the reader cannot see: a blank answer (the smoke build's tiny model gives those) and why it ended."""
    g = chat.last
    blank = "a blank answer, " if not text.strip() else ""
    return f"({blank}{g.new_tokens} new tokens, finish: {g.finish_reason})" if g else ""


def repl(chat: Chat, out=sys.stdout) -> None:
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    out.write("type a question, or /help for commands\n")
    while True:
        try:
            line = input(PROMPT)
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return
        if not line.strip():
            continue
        try:
            label, output = chat.command(line) if line.startswith("/") else (f"{chat.build.tag}> ", chat.ask(line))
        except EOFError:
            return
        except TooLong as exc:  # this message only: the conversation goes on
            label, output = "", f"({exc})"
        out.write(label)
        if isinstance(output, str):
            _write_stream([output], out)
        else:
            out.write(_note(chat, _write_stream(output, out)) + "\n")
            if chat.retrieval:
                out.write(format_sources(chat.last_sources) + "\n")


def check_sampling(args) -> None:
    """The same ranges the server's requests have (protocol.py), before anything is loaded."""
    from jobs.serve.protocol import MAX_NEW_TOKENS, SEED_RANGE

    for name, value, low, high in (("--max-new-tokens", args.max_new_tokens, 1, MAX_NEW_TOKENS),
                                   ("--temperature", args.temperature, 0.0, 2.0), ("--top-p", args.top_p, 1e-9, 1.0),
                                   ("--seed", args.seed, *SEED_RANGE)):
        if value is not None and not low <= value <= high:  # NaN fails it too
            raise ServeError(f"{name} {value} is outside [{low}, {high}]")
    for name, text in (("--question", args.question), ("--system", args.system)):
        if text is not None and len(text) > MAX_ARG_CHARS:
            raise ServeError(f"{name} is {len(text):,} characters; at most {MAX_ARG_CHARS:,} (the model's context "
                             f"holds far less)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Ask a build a question, or chat with it (no -q).")
    p.add_argument("--tag", help="build tag (default: the promoted `current` build)")
    p.add_argument("-q", "--question", help="ask this one question, print the answer and exit")
    p.add_argument("--system", help="system message (default: the one the build was trained with)")
    p.add_argument("--max-new-tokens", type=int, help="answer length cap in tokens (default: the spec's eval setting)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, help="sampling seed (same seed + same question = same answer)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--retrieval", choices=["on", "off"], help="answer from the build's retrieved passages "
                                                             "(default: the build's spec; builds with an index)")
    args = p.parse_args(argv)
    try:
        from jobs.core.text.embed import load_embedder
        from jobs.core.engine.generation import Sampling

        check_sampling(args)
        store = open_store()
        tag = pick_tags(store, args.tag)[0]
        wanted = ("adapter",) if args.question else ("adapter", "dataset")
        build = open_build(store, tag, with_index(store, tag, wanted))
        with gpu_memory_errors("ask on the CPU (--device cpu)"):
            engine = load_engine([build], args.device, compile_workers=False)  # one conversation: no worker pool
            sampling = Sampling(max_new_tokens=args.max_new_tokens or build.spec.eval.max_new_tokens,
                                temperature=args.temperature, top_p=args.top_p, seed=args.seed)
            chat = Chat(build, engine, sampling, embed_loader=lambda: load_embedder("cpu"),
                        retriever=Retriever.of(build))
            if args.system:
                chat.system = args.system
            if args.retrieval == "on" and chat.retriever is None:
                raise ServeError(f"--retrieval on: build {tag} has no retrieval index (its spec has no `retrieval:` "
                                 f"section); rebuild it with one, or ask without retrieval")
            if args.retrieval:
                chat.retrieval = args.retrieval == "on"
            print(describe([build], engine), file=sys.stderr if args.question else sys.stdout, flush=True)
            if args.question:
                print(_note(chat, _write_stream(chat.ask(args.question), sys.stdout)), file=sys.stderr)
                if chat.retrieval:  # the numbered references mean nothing without them: stdout, after the answer
                    print(format_sources(chat.last_sources))
            else:
                repl(chat)
    except QslmError as exc:
        print(f"ask: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
