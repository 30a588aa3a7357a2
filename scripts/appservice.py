"""Checks application service registrations (Synapse's YAML format) and turns them into SQL for
D1. Called by scripts/appservice.sh, which runs the SQL with wrangler; see README,
"Application services".

    appservice.py --server NAME [--existing FILE] [--only] FILE.yaml...

Prints the SQL on standard output. Every file is checked, against the others and against the
registrations already stored (`--existing`: wrangler's JSON answer to
`SELECT id, as_token, registration FROM appservices`), before anything is printed: a problem
prints `<file>: <key>: <what is wrong>` on standard error and exits with status 2, so nothing
is half-registered. `--only` makes the given files the whole set (the others are removed).

The checks are Synapse's (required string keys, `url` a string or an explicit null, namespace
entries with a string `regex` and a boolean `exclusive`), plus: unique ids and as_tokens, and no
two services' exclusive namespaces that overlap. Regexes must also suit the Worker's regex
engine (Rust `regex`): no look-around and no back-references.
"""

import argparse
import json
import re
import sys
import time

import yaml

KINDS = ("users", "aliases", "rooms")
# What Python's `re` accepts and the Rust `regex` crate does not.
UNSUPPORTED = re.compile(r"\(\?=|\(\?!|\(\?<=|\(\?<!|\(\?P=|\\[1-9]")
OPTIONAL_BOOLS = (
    "rate_limited",
    "receive_ephemeral",
    "de.sorunome.msc2409.push_ephemeral",
    "org.matrix.msc3202",
)


class Invalid(Exception):
    def __init__(self, source, key, message):
        super().__init__(f"{source}: {key}: {message}")


def check(source, info):
    """The registration as a dict, or Invalid naming the key."""
    if not isinstance(info, dict):
        raise Invalid(source, "(top level)", "the file must hold a YAML mapping")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if key not in info:
            raise Invalid(source, key, "missing (a required string)")
        if not isinstance(info[key], str) or not info[key]:
            raise Invalid(source, key, "must be a non-empty string")
    if "url" not in info:
        raise Invalid(source, "url", "missing (a string, or an explicit null for no pushes)")
    if info["url"] is not None and not isinstance(info["url"], str):
        raise Invalid(source, "url", "must be a string or null")
    if info["as_token"] == info["hs_token"]:
        raise Invalid(source, "hs_token", "must differ from as_token")
    if not re.fullmatch(r"[a-z0-9._=\-/+]+", info["sender_localpart"]):
        raise Invalid(source, "sender_localpart", "is not a valid user localpart")
    for key in OPTIONAL_BOOLS:
        if key in info and not isinstance(info[key], bool):
            raise Invalid(source, key, "must be true or false")
    namespaces = info.get("namespaces", {})
    if namespaces is None:
        namespaces = {}
    if not isinstance(namespaces, dict):
        raise Invalid(source, "namespaces", "must be a mapping")
    for kind in KINDS:
        entries = namespaces.get(kind, [])
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise Invalid(source, f"namespaces.{kind}", "must be a list")
        for i, entry in enumerate(entries):
            where = f"namespaces.{kind}[{i}]"
            if not isinstance(entry, dict):
                raise Invalid(source, where, "must be a mapping with regex and exclusive")
            if not isinstance(entry.get("regex"), str):
                raise Invalid(source, f"{where}.regex", "missing or not a string")
            if not isinstance(entry.get("exclusive"), bool):
                raise Invalid(source, f"{where}.exclusive", "missing or not true/false")
            try:
                re.compile(entry["regex"])
            except re.error as e:
                raise Invalid(source, f"{where}.regex", f"not a valid regex: {e}") from None
            if UNSUPPORTED.search(entry["regex"]):
                raise Invalid(
                    source, f"{where}.regex", "look-around and back-references are not supported"
                )
    return info


def example(regex):
    """A string the regex is likely to describe: its literal parts with wildcards dropped."""
    text = re.sub(r"\\(.)", r"\1", regex)
    return re.sub(r"[.][*+?]|[\^$()]|\[[^\]]*\][*+?]?", "", text)


def overlap(a, b):
    """Whether two namespace regexes may match the same ids: equal, or one matches the other's
    literal form (Synapse matches from the start of the id)."""
    if a == b:
        return True
    return bool(re.match(a, example(b)) or re.match(b, example(a)))


def check_set(registrations, files):
    """registrations: [(source, info)], the given files first. Unique ids and as_tokens, no
    exclusive overlaps. An error names a given file (`files`), not a stored registration."""
    seen_ids, seen_tokens = {}, {}
    for source, info in registrations:
        if info["id"] in seen_ids:
            raise Invalid(source, "id", f"{info['id']!r} is also the id in {seen_ids[info['id']]}")
        seen_ids[info["id"]] = source
        for key in ("as_token", "hs_token"):
            token = info[key]
            if token in seen_tokens:
                raise Invalid(source, key, f"this token is also used by {seen_tokens[token]}")
            seen_tokens[token] = source
    for i, (source, info) in enumerate(registrations):
        for other_source, other in registrations[i + 1:]:
            for kind in KINDS:
                for mine in (info.get("namespaces") or {}).get(kind) or []:
                    for theirs in (other.get("namespaces") or {}).get(kind) or []:
                        if not (mine["exclusive"] and theirs["exclusive"]):
                            continue
                        if overlap(mine["regex"], theirs["regex"]):
                            blamed, other_name = (
                                (other_source, source) if other_source in files else (source, other_source)
                            )
                            raise Invalid(
                                blamed,
                                f"namespaces.{kind}",
                                f"the exclusive regexes {mine['regex']!r} and {theirs['regex']!r} "
                                f"overlap (the other is in {other_name})",
                            )


def sql_text(value):
    return "'" + value.replace("'", "''") + "'"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--existing")
    parser.add_argument("--only", action="store_true")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    try:
        given = []
        for path in args.files:
            try:
                with open(path, encoding="utf-8") as f:
                    info = yaml.safe_load(f)
            except OSError as e:
                raise Invalid(path, "(file)", f"cannot be read: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise Invalid(path, "(file)", f"not valid YAML: {e}") from None
            given.append((path, check(path, info)))
        ids = {info["id"] for _, info in given}
        kept = []
        if args.existing and not args.only:
            with open(args.existing, encoding="utf-8") as f:
                answer = json.load(f)
            rows = answer[0]["results"] if answer and isinstance(answer, list) else []
            for row in rows:
                if row["id"] not in ids:
                    kept.append((f"the stored registration {row['id']!r}", json.loads(row["registration"])))
        check_set(given + kept, set(args.files))
    except Invalid as e:
        print(f"appservice registration {e}", file=sys.stderr)
        sys.exit(2)

    now = int(time.time() * 1000)
    out = []
    if args.only:
        keep = ", ".join(sql_text(i) for i in sorted(ids))
        out.append(f"DELETE FROM appservices WHERE id NOT IN ({keep});")
    for _, info in given:
        registration = json.dumps(info, sort_keys=True)
        out.append(
            "INSERT INTO appservices (id, as_token, registration, start_stream, updated_ts) VALUES ("
            f"{sql_text(info['id'])}, {sql_text(info['as_token'])}, {sql_text(registration)}, "
            f"(SELECT COALESCE(MAX(stream_ordering), 0) FROM events), {now}) "
            "ON CONFLICT(id) DO UPDATE SET as_token = excluded.as_token, "
            "registration = excluded.registration, updated_ts = excluded.updated_ts;"
        )
        bot = f"@{info['sender_localpart']}:{args.server}"
        out.append(
            "INSERT OR IGNORE INTO users (user_id, password_hash, created_ts, admin, displayname, appservice_id) "
            f"VALUES ({sql_text(bot)}, NULL, {now}, 0, {sql_text(info['sender_localpart'])}, {sql_text(info['id'])});"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
