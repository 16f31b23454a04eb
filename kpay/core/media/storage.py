"""Where finished media files are kept: a folder on this node, or an S3-compatible bucket.

A backend stores whole files under keys (``<media id>/<variant>``). Uploads in
progress are staged on the local disk (kpay/core/media/uploads.py) whatever the
backend, and moved here once complete and checked. Every file operation runs in a
thread (local) or through aioboto3 (S3): never a blocking call on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from kpay.core.config import MediaSettings
from kpay.core.errors import ConfigError

READ_BLOCK = 256 * 1024


class Storage(Protocol):
    """A media storage backend. ``redirects``: whether files are served by redirecting
    to :meth:`presigned_url` (S3) rather than streamed by kpay (:meth:`read`)."""

    name: str
    redirects: bool

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        """Store the file at ``source`` under ``key`` (the source is left in place)."""

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of the file under ``key``, in blocks."""

    async def presigned_url(self, key: str, content_type: str, ttl: int) -> str:
        """A URL the client may fetch the file from directly for ``ttl`` seconds."""

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every file whose key starts with ``prefix``."""

    async def close(self) -> None: ...


class LocalStorage:
    """Files under one folder, ``<root>/<key>``."""

    name = "local"
    redirects = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        # Keys are made by kpay (ids and variant names), never by a client; the check is
        # a second lock on the door.
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"media key {key!r} leaves the storage folder")
        return path

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        target = self.path(key)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            try:
                # Staging and files share a disk by default: a link, not a 500 MB copy.
                os.link(source, partial)
            except OSError:
                shutil.copyfile(source, partial)
            os.replace(partial, target)

        await asyncio.to_thread(copy)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.path(key)
        position = start
        while position <= end:
            # One thread hop per block (open, seek, read together): a range of a few
            # hundred KB, what a player asks, is one hop.
            block = await asyncio.to_thread(read_block, path, position,
                                            min(READ_BLOCK, end - position + 1))
            if not block:
                return
            position += len(block)
            yield block

    async def presigned_url(self, key: str, content_type: str, ttl: int) -> str:
        raise NotImplementedError("local storage is served by kpay itself")

    async def delete_prefix(self, prefix: str) -> None:
        folder = self.path(prefix.rstrip("/"))
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def close(self) -> None:
        return None


class S3Storage:
    """Objects in an S3-compatible bucket (AWS S3, Tencent COS, Aliyun OSS, MinIO),
    through aioboto3. Served by a redirect to a presigned URL after kpay's own checks."""

    name = "s3"
    redirects = True

    def __init__(self, settings: MediaSettings) -> None:
        import aioboto3

        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.session = aioboto3.Session(
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None,
            region_name=settings.s3_region)
        self._client: Any = None
        self._context: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        # One client for the app's life (a connection pool), made on first use.
        async with self._lock:
            if self._client is None:
                self._context = self.session.client(
                    "s3", endpoint_url=self.settings.s3_endpoint_url or None)
                self._client = await self._context.__aenter__()
        return self._client

    def key(self, key: str) -> str:
        return self.prefix + key

    async def put_file(self, key: str, source: Path, content_type: str) -> None:
        import aiofiles  # aioboto3's own dependency: it reads an async file without blocking

        client = await self.client()
        async with aiofiles.open(source, "rb") as handle:
            await client.upload_fileobj(handle, self.bucket, self.key(key),
                                        ExtraArgs={"ContentType": content_type})

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        client = await self.client()
        response = await client.get_object(Bucket=self.bucket, Key=self.key(key),
                                           Range=f"bytes={start}-{end}")
        async with response["Body"] as body:
            while block := await body.read(READ_BLOCK):
                yield block

    async def presigned_url(self, key: str, content_type: str, ttl: int) -> str:
        client = await self.client()
        return await client.generate_presigned_url(
            "get_object", ExpiresIn=ttl,
            Params={"Bucket": self.bucket, "Key": self.key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": "inline"})

    async def delete_prefix(self, prefix: str) -> None:
        client = await self.client()
        listed = await client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(prefix))
        keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
        if keys:
            await client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    async def close(self) -> None:
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._client = self._context = None


def read_block(path: Path, position: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(position)
        return handle.read(length)


def media_root(settings: MediaSettings, var_dir: str) -> Path:
    return Path(settings.path or os.path.join(var_dir, "media"))


def make_storage(settings: MediaSettings, var_dir: str) -> Storage:
    """The backend ``[media] storage`` names."""
    if settings.storage == "s3":
        if not settings.s3_bucket:
            raise ConfigError("[media] s3_bucket: required when storage = \"s3\"")
        return S3Storage(settings)
    return LocalStorage(media_root(settings, var_dir) / "files")
