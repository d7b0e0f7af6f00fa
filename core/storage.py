"""Reading and writing where the project's data lives: local paths and ``s3://`` URIs, through one interface.

- ``Store(root)``: keys relative to a folder or an S3 prefix (list, read, read many concurrently, write, download).
  Anonymous S3 reads (public data such as ABID, or no credentials at all) go through ``cloud.s3``'s pooled HTTP
  reader, three times cheaper in CPU than botocore per object; signed reads and listings go through botocore.
- ``list_files`` / ``reader`` / ``download``: the same for a mix of absolute locations (files, folders, prefixes),
  as command lines name them.

A ``Store`` is picklable: each worker process builds its own reader (HTTP pools are not shared across processes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloud import s3

Reader = Callable[[str], bytes]


def is_remote(location: str) -> bool:
    return s3.is_s3_uri(location)


@dataclass(frozen=True)
class Store:
    """Keys under ``root``, a local folder or ``s3://bucket[/prefix]``."""

    root: str
    endpoint_url: str | None = None
    unsigned: bool | None = None  # None: anonymous only when no AWS credentials exist
    region: str | None = None

    @property
    def is_s3(self) -> bool:
        return is_remote(self.root)

    def _bucket_base(self) -> tuple[str, str]:
        bucket, base = s3.parse_s3_uri(self.root)
        return bucket, f"{base.rstrip('/')}/" if base else ""

    def client(self):
        return s3.client(self.endpoint_url, region=self.region, unsigned=self.unsigned)

    def uri(self, key: str) -> str:
        """Where ``key`` lives, as a user would name it."""
        return f"{self.root.rstrip('/')}/{key}"

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys relative to the root that start with ``prefix``, in sorted order, streamed (memory stays flat)."""
        if self.is_s3:
            bucket, base = self._bucket_base()
            for key in s3.list_keys(self.client(), bucket, base + prefix):
                yield key[len(base):]
            return
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"source folder does not exist: {self.root}")
        yield from sorted(_walk(root, prefix))

    def reader(self) -> Reader:
        """A function key -> bytes; build one per process."""
        if not self.is_s3:
            root = Path(self.root)
            return lambda key: (root / key).read_bytes()
        bucket, base = self._bucket_base()
        if s3.anonymous(self.unsigned):
            read = s3.anonymous_reader(bucket, self.endpoint_url)
            return lambda key: read(base + key)
        client = self.client()

        def signed(key: str) -> bytes:
            try:
                return s3.get(client, bucket, base + key)
            except Exception as error:  # noqa: BLE001 - any botocore failure, as one line a user can act on
                raise s3.explain(error, f"s3://{bucket}/{base}{key}") from None

        return signed

    def read_many(self, keys: Iterable[str], workers: int = 32) -> Iterator[bytes | Exception]:
        """Read ``keys`` with up to ``workers`` in flight, in order; a failed read yields its exception."""
        return s3.read_many(self.reader(), keys, workers)

    def write(self, key: str, data: bytes) -> None:
        if self.is_s3:
            bucket, base = self._bucket_base()
            self.client().put_object(Bucket=bucket, Key=base + key, Body=data)
            return
        path = Path(self.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def download(self, local: Path) -> int:
        """Copy everything under the root into the folder ``local``, keeping relative paths; returns the file count."""
        if self.is_s3:
            return s3.download_prefix(self.client(), self.root, local)
        if not Path(self.root).is_dir():
            raise FileNotFoundError(f"folder does not exist: {self.root}")
        shutil.copytree(self.root, local, dirs_exist_ok=True)
        return sum(1 for path in Path(local).rglob("*") if path.is_file())


def _walk(root: Path, prefix: str) -> Iterator[str]:
    start = root / prefix
    if not start.exists():
        return
    for folder, dirs, files in os.walk(start):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield (Path(folder) / name).relative_to(root).as_posix()


def list_files(locations: Iterable[str], keep: Callable[[str], bool], region: str | None = None) -> list[str]:
    """Every file named or found under the given files, folders (recursively) and S3 prefixes, in a stable order.

    Files found in folders and prefixes are kept when ``keep(name)``; a file named explicitly is always kept.
    """
    found = []
    for location in locations:
        if is_remote(location) or Path(location).is_dir():
            store = Store(location.rstrip("/") if is_remote(location) else location, region=region)
            found += [store.uri(key) for key in store.list() if keep(key) and not key.endswith("/")]
        elif Path(location).is_file():
            found.append(location)
        else:
            raise FileNotFoundError(f"no such file or folder: {location}")
    return found


def reader(region: str | None = None) -> Reader:
    """A function location -> bytes for local paths and S3 URIs alike (one client, made on first S3 read)."""
    stores: dict[str, Reader] = {}

    def read(location: str) -> bytes:
        if not is_remote(location):
            return Path(location).read_bytes()
        bucket, key = s3.parse_s3_uri(location)
        if bucket not in stores:
            stores[bucket] = Store(f"s3://{bucket}", region=region).reader()
        return stores[bucket](key)

    return read


def read_many(read: Reader, locations: Iterable[str], workers: int = 32) -> Iterator[bytes | Exception]:
    """``read`` each location with up to ``workers`` in flight, in order; a failed read yields its exception."""
    return s3.read_many(read, locations, workers)


def download(location: str, local: Path) -> int:
    """Copy a folder or S3 prefix into ``local``; returns the number of files."""
    return Store(location).download(local)


def upload(path: Path, location: str, region: str | None = None) -> str:
    """Copy a local file to a location (an S3 URI or a path), with a progress bar for large files; returns it."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm import tqdm

    path = Path(path)
    if not is_remote(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, location)
        return location
    bucket, key = s3.parse_s3_uri(location)
    size = path.stat().st_size
    try:
        with tqdm(total=size, unit="B", unit_scale=True, desc=f"uploading {path.name}", disable=size < 2**26) as bar:
            s3.client(region=region).upload_file(str(path), bucket, key, Callback=bar.update)
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        raise s3.explain(error.__cause__ or error, location) from None
    return location
