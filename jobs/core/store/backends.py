"""The artifact store: a local directory (default) or an S3 bucket (MinIO), with one key layout.

    QSLM_STORE=store                 # a directory, relative to the current folder or absolute (default: <repo>/store)
    QSLM_STORE=s3://bucket/prefix    # S3; S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY from the env

`create_bytes` is the commit point: it writes a key only if it does not exist yet (O_EXCL locally,
If-None-Match: * on S3), so two builds of one tag cannot both complete.

S3 requests have a connect and a read timeout (QSLM_S3_TIMEOUT_S, default 30 s; connect at most 10 s) and are
tried QSLM_S3_ATTEMPTS times (default 4) on a connection fault, a timeout or a 5xx answer, with pauses of 1, 2,
4 ... s; each failed try prints one line on stderr, and the last raises a StoreError naming the endpoint and the
fix. A frozen endpoint therefore ends in an error after about ATTEMPTS x TIMEOUT seconds, never a hang. Refusals
another try will not change (no such bucket, bad credentials) raise at once. Files go up in one PUT each (no
multipart upload), so a killed upload leaves nothing behind in the bucket.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.store.provenance import files_under, sha256_file
from jobs.core.repo import REPO_ROOT

CHUNK = 1 << 20  # bytes read at a time when streaming a download or hashing


LOCK_PREFIX = ".lock-"  # a local store's lock files (put_if), beside their key; never listed as keys


class StoreError(QslmError):
    pass


class KeyExists(StoreError):
    pass


@dataclass(frozen=True)
class Unfinished:
    """A write that never finished: a local `.tmp-*` copy, or an S3 multipart upload never completed."""

    key: str
    started: datetime
    handle: str  # the temp file's path, or the multipart upload's id


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise StoreError(f"invalid store key {key!r}")
    return key


class LocalStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def _oserror(self, key: str, exc: OSError) -> StoreError:
        return StoreError(f"cannot write {key} in the store folder {self.url}: {exc.strerror}; free space or fix "
                          f"its permissions, or point QSLM_STORE elsewhere")

    def check(self) -> None:
        """Fail now, not after hours of work, when the store cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.url}: {exc.strerror}; fix QSLM_STORE") from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"the store folder {self.url} is not writable; fix its permissions or QSLM_STORE")

    def _write_tmp(self, key: str, write) -> Path:
        """A complete, flushed temp copy beside the key's final place (same file system, so linking is atomic)."""
        dest, tmp = self._path(key), None
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            tmp = Path(name)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise self._oserror(key, exc) from None
        return tmp

    def put_file(self, key: str, path: str | Path) -> None:
        def copy(f):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f, CHUNK)
        tmp = self._write_tmp(key, copy)
        os.replace(tmp, self._path(key))  # readers never see a half-copied file

    def put_bytes(self, key: str, data: bytes) -> None:
        os.replace(self._write_tmp(key, lambda f: f.write(data)), self._path(key))

    def create_bytes(self, key: str, data: bytes) -> None:
        tmp = self._write_tmp(key, lambda f: f.write(data))
        try:
            os.link(tmp, self._path(key))  # fails if the key exists: atomic create with full content
        except FileExistsError:
            raise KeyExists(f"{key} already exists in {self.url}") from None
        finally:
            tmp.unlink()

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """(content, version) of a key, (None, None) when absent; the version is what put_if compares."""
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StoreError(f"cannot read {key} in the store folder {self.url}: {exc.strerror}") from None
        return data, hashlib.sha256(data).hexdigest()

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        """Write `key` only if it is still at `version` (None: still absent); False when another writer changed it
        first. An exclusive lock (fcntl) on a lock file beside the key spans the compare and the atomic rename."""
        import fcntl

        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(path.with_name(f"{LOCK_PREFIX}{path.name}"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._oserror(key, exc) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
            if self.get_versioned(key)[1] != version:
                return False
            self.put_bytes(key, data)
            return True
        finally:
            os.close(lock)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise StoreError(f"{key} not found in {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key} in the store folder {self.url}: {exc.strerror}") from None

    def get_file(self, key: str, path: str | Path) -> None:
        if not self.exists(key):
            raise StoreError(f"{key} not found in {self.url}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), path)

    def sha256(self, key: str) -> str:
        if not self.exists(key):
            raise StoreError(f"{key} not found in {self.url}")
        return sha256_file(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix.endswith("/") or not prefix else self.root / Path(prefix).parent
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith((".tmp-", LOCK_PREFIX)))

    def _prune(self, folder: Path) -> None:
        # Empty folders left by a deletion go too, up to the store's root.
        while folder != self.root and folder.is_relative_to(self.root) and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def unfinished(self) -> list[Unfinished]:
        if not self.root.is_dir():
            return []
        return [Unfinished(p.relative_to(self.root).as_posix(),
                           datetime.fromtimestamp(p.stat().st_mtime, timezone.utc), str(p))
                for p in sorted(self.root.rglob(".tmp-*")) if p.is_file()]

    def abort(self, item: Unfinished) -> None:
        Path(item.handle).unlink(missing_ok=True)
        self._prune(Path(item.handle).parent)


# Error codes that say the request may succeed if tried again (the server was busy or restarting).
TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}
CREDENTIAL_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}


class S3Store:
    def __init__(self, bucket: str, prefix: str = ""):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = os.environ.get("S3_ENDPOINT_URL") or None
        self.url = f"s3://{bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")
        self.attempts = max(1, int(os.environ.get("QSLM_S3_ATTEMPTS", "4")))
        self.timeout_s = float(os.environ.get("QSLM_S3_TIMEOUT_S", "30"))  # per connect, per socket read
        # botocore retries nothing itself: _call retries, so every try is reported and the total is bounded.
        self.client = boto3.client("s3", endpoint_url=self.endpoint,
                                   region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                                   config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                 connect_timeout=min(self.timeout_s, 10.0),
                                                 read_timeout=self.timeout_s, s3={"addressing_style": "path"}))

    def _k(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _where(self) -> str:
        return f"the S3 endpoint {self.endpoint or '(AWS default)'}"

    def _error(self, op: str, key: str, exc: Exception) -> StoreError:
        """A request the server answered with a refusal that trying again will not change."""
        from botocore.exceptions import NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            return StoreError(f"no S3 credentials for {self.url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        error = getattr(exc, "response", {}).get("Error", {})
        code = str(error.get("Code", type(exc).__name__))
        if code == "NoSuchBucket" or (op == "HEAD bucket" and code in ("404", "NotFound")):
            return StoreError(f"bucket {self.bucket!r} does not exist at {self._where()}: create it (e.g. "
                              f"`mc mb`), or fix QSLM_STORE / S3_ENDPOINT_URL")
        if code in CREDENTIAL_CODES:
            return StoreError(f"{self._where()} refused the credentials for {op} {key} in bucket {self.bucket!r} "
                              f"({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return StoreError(f"{op} {key} in {self.url}: {code}: {error.get('Message', exc)}")

    def _call(self, op: str, key: str, request):
        """request() tried up to self.attempts times on connection faults, timeouts and 5xx answers, one line per
        failed try on stderr; other refusals raise at once (ClientError is re-raised for the caller to read)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                return request()
            except NoCredentialsError as exc:
                raise self._error(op, key, exc) from None
            except ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if str(error.get("Code")) not in TRANSIENT_CODES and status < 500:
                    raise
                reason = f"{error.get('Code')} ({status})"
            except BotoCoreError as exc:  # connection refused or dropped, timeouts, a truncated body
                reason = f"{type(exc).__name__}: {exc}"
            if attempt == self.attempts:
                raise StoreError(f"{op} {key} failed {self.attempts} times over {time.monotonic() - started:.0f} s "
                                 f"at {self._where()} (last: {reason}). Check that the endpoint is up and "
                                 f"reachable from here and that S3_ENDPOINT_URL is right, then run the command "
                                 f"again") from None
            pause = 2.0 ** (attempt - 1)  # seconds: 1, 2, 4, ...
            print(f"store: {op} {key}: {reason}; attempt {attempt} of {self.attempts} failed, retrying in "
                  f"{pause:.0f} s", file=sys.stderr, flush=True)
            time.sleep(pause)

    def _request(self, op: str, key: str, request):
        """_call, with every refusal turned into a StoreError."""
        from botocore.exceptions import ClientError

        try:
            return self._call(op, key, request)
        except ClientError as exc:
            raise self._error(op, key, exc) from None

    def check(self) -> None:
        self._request("HEAD bucket", self.bucket, lambda: self.client.head_bucket(Bucket=self.bucket))

    def put_file(self, key: str, path: str | Path) -> None:
        def send():
            with open(path, "rb") as f:  # reopened on each try: a failed try may have read part of it
                self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=f)
        self._request("PUT", key, send)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._request("PUT", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data))

    def create_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("PUT (if absent)", key, lambda: self.client.put_object(
                Bucket=self.bucket, Key=self._k(key), Body=data, IfNoneMatch="*"))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise KeyExists(f"{key} already exists in {self.url}") from None
            raise self._error("PUT", key, exc) from None

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """(content, ETag) of a key, (None, None) when absent."""
        from botocore.exceptions import ClientError

        def fetch():
            answer = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
            return answer["Body"].read(), answer["ETag"]
        try:
            return self._call("GET", key, fetch)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise self._error("GET", key, exc) from None

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        """Write `key` only if its ETag is still `version` (None: still absent), by a conditional PUT (If-Match /
        If-None-Match: *); False when another writer changed it first. A try that timed out may have written:
        the caller recognises its own change when it reads the key again."""
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            self._call("PUT (conditional)", key, lambda: self.client.put_object(
                Bucket=self.bucket, Key=self._k(key), Body=data, **condition))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                             "NoSuchKey", "412", "409"):
                return False
            raise self._error("PUT", key, exc) from None

    def _get(self, key: str, consume):
        """Stream one object's body through consume(chunks); a missing key is a StoreError naming it."""
        from botocore.exceptions import ClientError

        def fetch():
            return consume(self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].iter_chunks(CHUNK))
        try:
            return self._call("GET", key, fetch)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoreError(f"{key} not found in {self.url}") from None
            raise self._error("GET", key, exc) from None

    def get_bytes(self, key: str) -> bytes:
        return self._get(key, b"".join)

    def get_file(self, key: str, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")

        def write(chunks):
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
        try:
            self._get(key, write)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def sha256(self, key: str) -> str:
        def digest(chunks):
            h = hashlib.sha256()
            for chunk in chunks:
                h.update(chunk)
            return h.hexdigest()
        return self._get(key, digest)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call("HEAD", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._k(key)))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("HEAD", key, exc) from None

    def _pages(self, method: str, prefix: str, field: str) -> list[dict]:
        def every_page():  # a listing that fails half-way is listed again from the start
            pages = self.client.get_paginator(method).paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            return [item for page in pages for item in page.get(field, [])]
        return self._request("LIST", prefix or "/", every_page)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(o["Key"][len(self.prefix):] for o in self._pages("list_objects_v2", prefix, "Contents"))

    def delete(self, key: str) -> None:
        self._request("DELETE", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._k(key)))

    def unfinished(self) -> list[Unfinished]:
        return [Unfinished(u["Key"][len(self.prefix):], u["Initiated"], u["UploadId"])
                for u in self._pages("list_multipart_uploads", "", "Uploads")]

    def abort(self, item: Unfinished) -> None:
        self._request("ABORT upload", item.key, lambda: self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self._k(item.key), UploadId=item.handle))


BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")  # S3's rule for bucket names


def open_store(url: str | None = None) -> LocalStore | S3Store:
    """The store QSLM_STORE names: a folder (made when first written), or s3://bucket[/prefix]. Anything else (a
    file, another scheme, a bucket name S3 would refuse) is a StoreError now, not an empty store later."""
    url = url or os.environ.get("QSLM_STORE") or str(REPO_ROOT / "store")
    use = "set QSLM_STORE to a folder (e.g. store) or to s3://bucket[/prefix]"
    shown = repr(url[:200])
    if "\0" in url or len(url) > 4096:
        raise StoreError(f"QSLM_STORE={shown} is not a usable folder or URL; {use}")
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not BUCKET_NAME.match(bucket):
            raise StoreError(f"QSLM_STORE={shown}: {bucket!r} is not an S3 bucket name (3 to 63 lower-case "
                             f"letters, digits, '.' or '-'); use s3://bucket[/prefix]")
        if any(part in (".", "..") for part in prefix.split("/")):
            raise StoreError(f"QSLM_STORE={shown}: the prefix may not hold '.' or '..' parts; {use}")
        return S3Store(bucket, prefix)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url):
        raise StoreError(f"QSLM_STORE={shown}: only s3:// URLs are stores (S3_ENDPOINT_URL names the server); {use}")
    path = Path(url)
    if path.exists() and not path.is_dir():
        raise StoreError(f"QSLM_STORE={shown} is a file, not a folder; {use}")
    for parent in path.absolute().parents:  # a file on the way makes every later write fail
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"QSLM_STORE={shown}: {parent} is a file, so the store folder cannot exist; {use}")
            break
    return LocalStore(url)


def download_folder(store, prefix: str, dest: str | Path) -> list[str]:
    """Copy every key under `prefix` into `dest`, keeping the relative layout; returns the keys copied."""
    keys = store.list(prefix)
    for key in keys:
        store.get_file(key, Path(dest) / key[len(prefix):])
    return keys


def upload_folder(store, folder: str | Path, prefix: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under `folder` to `prefix` + relative path; skips top-level entries named in `exclude`."""
    keys = []
    for rel, path in files_under(folder, exclude):
        store.put_file(prefix + rel, path)
        keys.append(prefix + rel)
    return keys
