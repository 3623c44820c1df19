"""`make gc`: what interrupted or losing publishes left in the store, listed (the default) or removed (--apply).

    python -m jobs.core.store.cli gc [--apply] [--min-age-hours 24]

What is garbage, and why removing it is safe:
- under a committed tag, every key its manifest does not list (the attempt of a run that lost the commit or was
  killed, a schema-1 leftover): no reader looks at it, and nothing can commit it any more (the tag is taken);
- an attempt of a tag without a manifest, started more than --min-age-hours ago: publish gives up committing
  after COMMIT_WITHIN_S, and the age is at least twice that, so no manifest will ever name it;
- keys of a tag without a manifest outside attempts/ (where publish wrote before attempts existed): no publish
  commits them any more;
- unfinished writes older than --min-age-hours: local `.tmp-*` copies, S3 multipart uploads (of older versions,
  or of Argo's artifact uploads under runs/).
Never touched: the files a manifest lists, sources/, runs/ (other than unfinished uploads) and registry/.
The synthesis cache (cache/synthesis/<writer>/) is listed per writer and cleared only when asked for by name
(--clear-cache WRITER, or `all`): its replies are not garbage, but a writer's may be worth asking again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from jobs.core.store import keys
from jobs.core.store.publish import COMMIT_WITHIN_S
from jobs.core.store.registry import RegistryError, listed_keys, read_manifest
from jobs.core.store.backends import Unfinished

MIN_AGE_FLOOR_S = 2 * COMMIT_WITHIN_S  # younger uncommitted attempts may still be publishing


@dataclass(frozen=True)
class Garbage:
    key: str
    why: str
    unfinished: Unfinished | None = None  # set for an unfinished write (aborted, not deleted)


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _uncommitted(tag: str, tag_keys: list[str], min_age_s: float, now: datetime,
                 garbage: list[Garbage], kept: set[str]) -> None:
    for key in tag_keys:
        found = keys.attempt_of_key(key)
        started = keys.attempt_started(found[1]) if found else None
        if found is None:
            garbage.append(Garbage(key, f"build {tag} has no manifest, and no publish writes outside attempts/"))
        elif started is None:
            kept.add(f"builds/{tag}/attempts/{found[1]}/: not an attempt id; left alone")
        elif (age := (now - started).total_seconds()) >= min_age_s:
            garbage.append(Garbage(key, f"attempt {found[1]} of {tag} never committed (started {_age(age)} ago)"))
        else:
            kept.add(f"builds/{tag}/attempts/{found[1]}/: started {_age(age)} ago, may still be publishing")


def find_garbage(store, min_age_s: float, now: datetime | None = None) -> tuple[list[Garbage], list[str]]:
    """(what can be removed, notes on what was left and why)."""
    now = now or datetime.now(timezone.utc)
    by_tag: dict[str, list[str]] = defaultdict(list)
    for key in store.list("builds/"):
        if key.count("/") >= 2:
            by_tag[key.split("/")[1]].append(key)
    garbage: list[Garbage] = []
    kept: set[str] = set()
    for tag, tag_keys in sorted(by_tag.items()):
        if keys.manifest_key(tag) not in tag_keys:
            _uncommitted(tag, tag_keys, min_age_s, now, garbage, kept)
            continue
        try:
            owned = listed_keys(read_manifest(store, tag), tag)
        except RegistryError as exc:  # a damaged manifest: nothing under it is touched
            kept.add(f"builds/{tag}/: {exc}")
            continue
        garbage += [Garbage(k, f"not listed by the manifest of committed build {tag}") for k in tag_keys
                    if k not in owned]
    for item in store.unfinished():
        age = (now - item.started).total_seconds()
        if age >= min_age_s:
            garbage.append(Garbage(item.key, f"a write never finished (started {_age(age)} ago)", item))
        else:
            kept.add(f"{item.key}: a write started {_age(age)} ago, may still be running")
    return garbage, sorted(kept)


def collect(store, garbage: list[Garbage]) -> None:
    for g in garbage:
        if g.unfinished:
            store.abort(g.unfinished)
        else:
            store.delete(g.key)


def gc_text(store, garbage: list[Garbage], kept: list[str], applied: bool, min_age_s: float) -> str:
    verb = "removed" if applied else "would remove"
    lines = [f"{verb}: {g.key}  ({g.why})" for g in garbage]
    lines += [f"kept: {k}" for k in kept]
    lines.append(f"\n{store.url}: {len(garbage)} item(s) {'removed' if applied else 'to remove'}, {len(kept)} left alone "
                 f"(uncommitted attempts and unfinished writes younger than {_age(min_age_s)} may still be running)")
    if garbage and not applied:
        lines.append("dry run: nothing was changed; `make gc APPLY=1` removes them")
    return "\n".join(lines)


def cache_writers(store) -> dict[str, int]:
    """Cached synthesis replies per writer folder (its slug: the writer's name made key-safe, and a hash)."""
    counts: dict[str, int] = defaultdict(int)
    for key in store.list(keys.SYNTHESIS_CACHE):
        counts[key[len(keys.SYNTHESIS_CACHE):].split("/", 1)[0]] += 1
    return dict(sorted(counts.items()))


def cache_garbage(store, which: str) -> list[Garbage]:
    """Every cached reply of the writer `which`: its folder name, its name as the spec's writer gives it
    (`openai:<model>@<revision>`, `engine:...`: synthesize-info.json records it), or `all`."""
    writers = cache_writers(store)
    chosen = list(writers) if which == "all" else [w for w in writers if which in (w, w.rsplit("-", 1)[0])
                                                    or w == keys.writer_slug(which)]
    if not chosen and which != "all":
        raise RegistryError(f"no synthesis cache for writer {which[:100]!r} in {store.url}; cached writers: "
                            f"{', '.join(writers) or '(none)'}, or all")
    return [Garbage(k, f"cached reply of writer {w} (asked to clear)") for w in chosen
            for k in store.list(keys.synthesis_cache_prefix(w))]


def cache_text(store) -> list[str]:
    return [f"synthesis cache: {w}: {n} replies (clear with `make gc CLEAR_CACHE={w} APPLY=1`)"
            for w, n in cache_writers(store).items()]
