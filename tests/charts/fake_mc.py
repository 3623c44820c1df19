"""MinIO's `mc` client, played over one JSON state file, for running the chart's shell scripts with nothing but
`sh` and this on PATH (the MinIO image has no grep or other tools). Where the real client fails (attaching a
policy twice, listing the rules of a bucket without any, a user the policy does not allow), so does this one.

    install(bin_dir, state_file, root, root_secret)   # then: sh -ec "$SCRIPT" with PATH=bin_dir
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def install(bin_dir: Path, state: Path, root: str, root_secret: str, buckets: tuple[str, ...] = ()) -> None:
    """The `mc` stub in bin_dir, over a server whose root user is `root` and which holds `buckets`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"root": root, "root_secret": root_secret, "aliases": {}, "buckets": list(buckets),
                                 "users": {}, "policies": {}, "attached": {}, "rules": [], "objects": {},
                                 "calls": []}))
    stub = bin_dir / "mc"
    stub.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    f"import fake_mc\nsys.exit(fake_mc.main(sys.argv[1:], {str(state)!r}))\n")
    stub.chmod(0o755)


def _allowed(state: dict, alias: str, action: str, bucket: str) -> bool:
    """Root may do anything; a user only what its attached policies allow on the bucket's ARNs."""
    user = state["aliases"][alias]["user"]
    if user == state.get("root"):
        return True
    for policy in state["attached"].get(user, []):
        for st in state["policies"][policy]["Statement"]:
            arns = {r.split(":::", 1)[1].split("/", 1)[0] for r in st["Resource"]}
            if st["Effect"] == "Allow" and action in st["Action"] and bucket in arns:
                return True
    return False


def main(args: list[str], state_file: str) -> int:
    state = json.loads(Path(state_file).read_text())
    state["calls"].append(args)
    code, out = _handle(state, args)
    Path(state_file).write_text(json.dumps(state))
    if out:
        (sys.stdout if code == 0 else sys.stderr).write(out + "\n")
    return code


def _handle(state: dict, args: list[str]) -> tuple[int, str]:
    if args[:2] == ["alias", "set"]:
        alias, _, user, secret = args[2:6]
        known = state["users"].get(user) == secret or (user, secret) == (state.get("root"), state.get("root_secret"))
        if not known:
            return 1, "mc: <ERROR> Unable to initialize new alias: The Access Key Id you provided does not exist"
        state["aliases"][alias] = {"user": user}
        return 0, f"Added `{alias}` successfully."
    if args[0] == "admin":
        return _admin(state, args[1:])
    target = args[-1]
    alias, _, rest = target.partition("/")
    bucket, _, key = rest.partition("/")
    if args[0] == "mb":
        if bucket in state["buckets"]:
            return (0, "") if "--ignore-existing" in args else (1, "mc: <ERROR> Bucket already exists")
        if not _allowed(state, alias, "s3:CreateBucket", bucket):
            return 1, "mc: <ERROR> Unable to make bucket. Access Denied."
        state["buckets"].append(bucket)
        return 0, f"Bucket created successfully `{target}`."
    if args[0] == "rb":
        state["buckets"].remove(bucket)
        return 0, ""
    if args[:3] == ["ilm", "rule", "ls"]:
        if not state["rules"]:
            return 1, "mc: <ERROR> Unable to get lifecycle. The lifecycle configuration does not exist"
        return 0, json.dumps({"status": "success", "target": target, "config": {"Rules": [
            {"ID": f"r{i}", "Status": "Enabled", "Filter": {"Prefix": r["prefix"]},
             "Expiration": {"Days": r["days"]}} for i, r in enumerate(state["rules"])]}})
    if args[:3] == ["ilm", "rule", "add"]:
        state["rules"].append({"prefix": args[args.index("--prefix") + 1],
                               "days": int(args[args.index("--expire-days") + 1])})
        return 0, "Lifecycle configuration rule added"
    action = {"pipe": "s3:PutObject", "cat": "s3:GetObject", "rm": "s3:DeleteObject"}[args[0]]
    if not _allowed(state, alias, action, bucket):
        return 1, "mc: <ERROR> Access Denied."
    if args[0] == "pipe":
        state["objects"][rest] = sys.stdin.read()
        return 0, ""
    if args[0] == "cat":
        return (0, state["objects"][rest].rstrip("\n")) if rest in state["objects"] else (1, "Object does not exist")
    state["objects"].pop(rest, None)
    return 0, f"Removed `{target}`."


def _admin(state: dict, args: list[str]) -> tuple[int, str]:
    if state["aliases"][args[2]]["user"] != state.get("root"):
        return 1, "mc: <ERROR> Access Denied."
    if args[:2] == ["user", "add"]:
        state["users"][args[3]] = args[4]
        return 0, f"Added user `{args[3]}` successfully."
    if args[:2] == ["policy", "create"]:
        state["policies"][args[3]] = json.loads(Path(args[4]).read_text())
        return 0, f"Created policy `{args[3]}` successfully."
    if args[:2] == ["user", "info"]:
        user = args[3]
        return 0, json.dumps({"status": "success", "accessKey": user, "userStatus": "enabled",
                              "policyName": ",".join(state["attached"].get(user, [])), "memberOf": None})
    if args[:2] == ["policy", "attach"]:
        user, policy = args[args.index("--user") + 1], args[3]
        if policy in state["attached"].get(user, []):
            return 1, "mc: <ERROR> Unable to make user/group policy association. The specified policy change is " \
                      "already in effect."
        state["attached"].setdefault(user, []).append(policy)
        return 0, f"Attached Policies: [{policy}]"
    return 1, f"fake mc: unexpected admin {args}"
