"""A conversation with one build, and the chat's commands (the terminal side lives in ask.py).

Commands: /reset, /system TEXT, /audience researcher|engineer|student [en|es], /base, /sources, /retrieval on|off,
/help, /exit. With retrieval on (a build with an index: jobs/serve/retrieval.py), each question goes to the model
with the build's passages for it, numbered, and the answer cites them; the sources follow the answer.
The system message is the one the adapter was trained with unless the user sets another; /audience puts the
audience's prompt after it, exactly as curate wrote the audience variants of the training examples.
A message (or a /system) that would make the conversation longer than the model's context, less the answer's
max_new_tokens, is refused with its size in tokens and by how much it is over (TooLong); the conversation is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from jobs.core.spec.audiences import AUDIENCES, audience_prompt
from jobs.serve import ServeError
from jobs.serve.builds import Build
from jobs.core.retrieval.rag import format_sources as format_cited
from jobs.core.retrieval.rag import sources_listing
from jobs.serve.retrieval import Retriever, augment
from jobs.serve.nearest import SourceIndex, format_sources

HELP = """commands:
  /reset                 forget the conversation (the system message stays)
  /system TEXT           use TEXT as the system message (/system alone: back to the build's own)
  /audience NAME [LANG]  steer by audience: researcher, engineer or student; LANG en (default) or es
  /base                  the base model's answer to your last question, beside the adapter's
  /sources               the passages the last answer was given (retrieval on), else the build's source
                         paragraphs nearest to the last answer (ids, file, section)
  /retrieval on|off      answer from the build's retrieved passages, citing them (builds with an index)
  /help                  this list
  /exit                  leave (Ctrl-D too)"""


class WhitespaceTrim:
    """Streams text so that its pieces join to the stripped answer, the engine's Generation.text (the engine's own
    chunks join to the text before the strip): leading whitespace is dropped, trailing whitespace is held back
    until more text follows it, and dropped at the end."""

    def __init__(self):
        self.started, self.held = False, ""

    def feed(self, text: str) -> str:
        text = self.held + text
        if not self.started:
            text = text.lstrip()
        body = text.rstrip()
        self.held = text[len(body):]
        self.started = self.started or bool(body)
        return body


MAX_CHARS_PER_TOKEN = 32  # far above any real text's characters per token (English: about 4)


class TooLong(ServeError):
    """A message the context cannot hold; the chat says so and goes on."""


@dataclass
class Chat:
    build: Build
    engine: object  # jobs.core.engine.generation.Engine
    sampling: object  # jobs.core.engine.generation.Sampling
    embed_loader: Callable  # () -> embedder; loaded on the first /sources only (MiniLM takes seconds)
    system: str | None = None
    history: list[dict] = field(default_factory=list)
    last: object = None  # the last answer's Generation (tokens, finish reason)
    _sources: SourceIndex | None = None
    retriever: Retriever | None = None  # the build's index, when it has one
    retrieval: bool = False  # answer with retrieved passages (default: the build's spec)
    last_sources: list[dict] = field(default_factory=list)  # the passages the last answer was given

    def __post_init__(self):
        self.system = self.build.system_prompt()
        self.retrieval = bool(self.retriever and self.retriever.default)

    def _conversation(self, turns: list[dict]) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + turns

    def _stream(self, turns: list[dict], adapter: str | None) -> Iterator[str]:
        trim = WhitespaceTrim()
        for chunk in self.engine.stream(self._conversation(turns), adapter, self.sampling):
            self.last = chunk.generation or self.last
            yield trim.feed(chunk.text)

    def _check_fits(self, turns: list[dict], system: str | None, what: str) -> None:
        """TooLong when the conversation (system message, `turns`) and the answer's max_new_tokens exceed the
        context, saying by how many tokens; nothing is changed."""
        conversation = ([{"role": "system", "content": system}] if system else []) + turns
        room = self.engine.context - self.sampling.max_new_tokens
        chars = sum(len(t["content"]) for t in conversation)
        if chars > MAX_CHARS_PER_TOKEN * room:  # plainly over: not worth seconds of tokenizing megabytes
            raise TooLong(f"{what} not taken: the conversation would be {chars:,} characters, more than "
                          f"{MAX_CHARS_PER_TOKEN} a token could fill in the {room:,} tokens the model's context of "
                          f"{self.engine.context:,} leaves beside {self.sampling.max_new_tokens:,} for the answer "
                          f"(over by at least {chars - MAX_CHARS_PER_TOKEN * room:,} characters). Shorten it; the "
                          f"conversation is kept")
        tokens = len(self.engine.prompt_ids([conversation])[0])
        if tokens > room:
            earlier = " or /reset to forget the earlier turns" if self.history else ""
            raise TooLong(f"{what} not taken: the conversation would be {tokens:,} tokens, {tokens - room:,} more "
                          f"than the {room:,} the model's context of {self.engine.context:,} leaves beside "
                          f"{self.sampling.max_new_tokens:,} for the answer. Shorten it{earlier}; the conversation "
                          f"is kept")

    def ask(self, question: str) -> Iterator[str]:
        """Stream the adapter's answer; the turn joins the history once it is complete. Raises TooLong at once
        (before any token) when the question does not fit."""
        turns = self.history + [{"role": "user", "content": question}]
        self._check_fits(turns, self.system, f"message of {len(question):,} characters")
        return self._answer(turns)

    def _answer(self, turns: list[dict]) -> Iterator[str]:
        asked, self.last_sources = turns, []
        if self.retrieval and self.retriever:
            count = lambda text: len(self.engine.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
            asked, self.last_sources = augment(self._conversation(turns), self.retriever, self.engine.context,
                                               self.sampling.max_new_tokens, count)
            asked = asked[1:] if self.system else asked  # _stream adds the system message again
        yield from self._stream(asked, self.build.tag)
        self.history = turns + [{"role": "assistant", "content": self.last.text}]

    def last_answer(self) -> str | None:
        return self.history[-1]["content"] if self.history else None

    def base(self) -> Iterator[str]:
        """The base model alone on the last turn, with the same history and system message before it."""
        return self._stream(self.history[:-1], None)

    def sources(self) -> str:
        if self.last_sources:
            return format_cited(self.last_sources)
        if not (self.last_answer() or "").strip():
            return "(no answer to compare with yet: ask a question first, or the last answer was blank)"
        if self.retriever is not None:  # the build's index: every parsed paragraph, with its locator
            return format_cited(sources_listing(self.retriever.index.search(self.last_answer(), 3)))
        if self._sources is None:  # a build from before indexes: MiniLM over the dataset's paragraphs
            self._sources = SourceIndex(self.build.artifact("dataset"), self.embed_loader())
        return format_sources(self._sources.nearest(self.last_answer()))

    def command(self, line: str) -> tuple[str, Iterator[str] | str]:
        """(label, output) for a /command: output is text, or a stream of text for /base. Raises EOFError on /exit."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if name in ("/exit", "/quit"):
            raise EOFError
        if name == "/reset":
            self.history = []
            return "", "(conversation forgotten)"
        if name == "/system":
            system = arg or self.build.system_prompt()
            try:
                self._check_fits(self.history, system, f"system message of {len(system or ''):,} characters")
            except TooLong as exc:
                return "", f"({exc})"
            self.system = system
            return "", f"(system message: {self.system or 'the base model default'})"
        if name == "/audience":
            who, _, lang = arg.partition(" ")
            if who not in AUDIENCES or lang.strip() not in ("", "en", "es"):
                return "", f"(usage: /audience {'|'.join(AUDIENCES)} [en|es])"
            self.system = self.build.system_prompt(audience_prompt(who, lang.strip() or "en"))
            return "", f"(system message: {self.system})"
        if name == "/base":
            if not self.history:
                return "", "(ask a question first: /base answers your last one with the base model)"
            # The adapter's answer again, then the base's to the same turn: the two read one above the other.
            base = self.build.spec.base_model.id
            return f"adapter {self.build.tag}> {self.last_answer()}\nbase {base}> ", self.base()
        if name == "/sources":
            return "", self.sources()
        if name == "/retrieval":
            if arg not in ("on", "off"):
                return "", f"(usage: /retrieval on|off; now {'on' if self.retrieval else 'off'})"
            if arg == "on" and self.retriever is None:
                return "", f"(build {self.build.tag} has no retrieval index: its spec has no `retrieval:` section)"
            self.retrieval = arg == "on"
            return "", f"(retrieval {arg})"
        if name == "/help":
            return "", HELP
        return "", f"(unknown command {name}; /help lists them)"
