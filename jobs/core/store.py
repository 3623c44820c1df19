"""The artifact store: a local directory (default) or an S3 bucket (MinIO), with one key layout.

    QSLM_STORE=store                 # a directory, relative to the current folder or absolute (default: <repo>/store)
    QSLM_STORE=s3://bucket/prefix    # S3; S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY from the env

`create_bytes` is the commit point: it writes a key only if it does not exist yet (O_EXCL locally,
If-None-Match: * on S3), so two builds of one tag cannot both complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.provenance import files_under
from jobs.core.spec import REPO_ROOT


class StoreError(QslmError):
    pass


class KeyExists(StoreError):
    pass


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

    def put_file(self, key: str, path: str | Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)  # readers never see a half-copied file

    def put_bytes(self, key: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".qslm-put-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            self.put_file(key, tmp)
        finally:
            os.unlink(tmp)

    def create_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, dest)  # fails if dest exists: atomic create with full content
        except FileExistsError:
            raise KeyExists(f"{key} already exists in {self.url}") from None
        finally:
            os.unlink(tmp)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{key} not found in {self.url}") from None

    def get_file(self, key: str, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(self.get_bytes(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix.endswith("/") or not prefix else self.root / Path(prefix).parent
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith(".tmp-"))


class S3Store:
    def __init__(self, bucket: str, prefix: str = ""):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        endpoint = os.environ.get("S3_ENDPOINT_URL") or None
        self.url = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint}" if endpoint else "")
        self.client = boto3.client("s3", endpoint_url=endpoint,
                                   region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                                   config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                                 s3={"addressing_style": "path"}))

    def _k(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def _err(self, exc, key):
        return StoreError(f"{key} in {self.url}: {type(exc).__name__}: {exc}")

    def put_file(self, key: str, path: str | Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._k(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)

    def create_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise KeyExists(f"{key} already exists in {self.url}") from None
            raise self._err(exc, key) from exc

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
        except ClientError as exc:
            raise self._err(exc, key) from exc

    def get_file(self, key: str, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(self.get_bytes(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._err(exc, key) from exc

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + prefix):
            keys += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
        return sorted(keys)


def open_store(url: str | None = None) -> LocalStore | S3Store:
    url = url or os.environ.get("QSLM_STORE") or str(REPO_ROOT / "store")
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise StoreError(f"QSLM_STORE={url}: no bucket name; use s3://bucket[/prefix]")
        return S3Store(bucket, prefix)
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
