"""Read offline W&B runs back (test helper; wandb 0.31 ships no public reader).

A `.wandb` file is a 7-byte header (`:W&B`, magic 0xBEE1, version 0) followed by
LevelDB-log records: 32 KiB blocks of chunks `crc32 (4) | length (2) | type (1) | data`
(types FULL=1, FIRST=2, MIDDLE=3, LAST=4; the CRC is zlib's CRC-32 over type + data).
Each record is a serialized `wandb.proto.wandb_internal_pb2.Record`. A process killed
mid-write leaves a truncated tail, which is ignored.

    runs = read_runs(experiment_dir)          # {run id: Run}, segments merged
    runs["a1b2c3d4"].history[-1]["_step"]
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

HEADER = struct.Struct("<4sHB")  # ":W&B", 0xBEE1, version
CHUNK = struct.Struct("<IHB")  # crc32, length, type
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> Iterator[pb.Record]:
    """Every complete, checksummed record of one `.wandb` file, in order."""
    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    pos, parts = HEADER.size, []
    while pos + CHUNK.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK.size:  # block trailer: zero padding
            pos += room
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled rest of a block
            pos += room
            continue
        body = data[pos + CHUNK.size : pos + CHUNK.size + length]
        if len(body) < length or zlib.crc32(body, zlib.crc32(bytes([kind]))) != crc:
            return  # truncated or torn tail of a killed writer
        pos += CHUNK.size + length
        if kind in (FULL, FIRST):
            parts = [body]
        else:
            parts.append(body)
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            yield record


@dataclass
class Run:
    id: str
    name: str = ""
    group: str = ""
    project: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_codes: list[int | None] = field(default_factory=list)  # one per segment; None: killed
    files: list[Path] = field(default_factory=list)  # .wandb files, oldest first

    @property
    def steps(self) -> list[int]:
        return [row["_step"] for row in self.history]


def _key(item) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def read_run_file(path: str | Path) -> tuple[float, Run]:
    """(start time, Run) of one `.wandb` file (one segment of a run)."""
    run, start = Run(id=""), 0.0
    exit_code = None
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.name, run.group, run.project = (
                r.run_id,
                r.display_name,
                r.run_group,
                r.project,
            )
            run.tags, run.notes = list(r.tags), r.notes
            start = r.start_time.seconds + r.start_time.nanos / 1e9
            _apply(run.config, r.config.update, r.config.remove)
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    run.exit_codes, run.files = [exit_code], [Path(path)]
    return start, run


def _apply(target: dict, updates, removes) -> None:
    for item in updates:
        target[_key(item)] = json.loads(item.value_json)
    for item in removes:
        target.pop(_key(item), None)


def read_runs(root: str | Path, wait_s: float = 10.0) -> dict[str, Run]:
    """Every run under `root`, its segments (one per process that resumed it) merged.

    `run.finish()` returns before wandb-core writes the last records (they follow within
    milliseconds), so this waits up to `wait_s` for every segment's exit record; a
    killed process never writes one (pass 0 for those).
    """
    deadline = time.monotonic() + wait_s
    while True:
        segments = [read_run_file(p) for p in Path(root).rglob("*.wandb")]
        if time.monotonic() >= deadline or all(s.exit_codes[0] is not None for _, s in segments):
            break
        time.sleep(0.05)
    segments.sort(key=lambda s: s[0])
    runs: dict[str, Run] = {}
    for _, seg in segments:
        run = runs.setdefault(seg.id, Run(id=seg.id))
        run.name, run.group, run.project = seg.name, seg.group, seg.project
        run.tags, run.notes = seg.tags, seg.notes
        run.config.update(seg.config)
        run.history += seg.history
        run.summary.update({k: v for k, v in seg.summary.items() if not k.startswith("_")})
        run.exit_codes += seg.exit_codes
        run.files += seg.files
    return runs
