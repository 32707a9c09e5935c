"""The otlp suite: POST /v1/logs (OTLP protobuf, gzip) beside POST /logs (our JSON, gzip), the same logs
in batches of 1000 from 8 clients, against one server in one run.

The OTLP bodies carry exactly what the JSON bodies do, as an OpenTelemetry SDK would send it: one resource
per service (service.name, service.version, deployment.environment.name), severity numbers, string
bodies, trace ids as bytes, the other fields as attributes in OpenTelemetry's names, metadata as a
kvlist. After each arm the table holds exactly the logs acknowledged.

Beside the arms, `stages` times each step of both paths in this process on the same batches, so the report
shows where an OTLP record's extra cost goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import uvloop
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from app.formats import otlp
from app.intake import rows
from bench import db, http
from bench.data import LogFactory, body, gzipped

BATCH = 1000
CLIENTS = 8
STAGE_REPEATS = 15
_SEVERITY = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
# Our field -> the OpenTelemetry attribute the mapping reads it from (app/formats/otlp.py).
_ATTRIBUTES = {
    "user_id": "user.id", "session_id": "session.id", "path": "url.path", "method": "http.request.method",
    "error_type": "exception.type", "stack_trace": "exception.stacktrace", "function_name": "code.function.name",
    "file_path": "code.file.path", "duration_ms": "duration_ms", "action_type": "action_type", "log_type": "log_type",
}  # fmt: skip


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, dict):
        any_value = AnyValue()
        any_value.kvlist_value.values.extend(KeyValue(key=k, value=_value(v)) for k, v in value.items())
        return any_value
    return AnyValue(string_value=str(value))


def protobuf(entries: list[dict[str, Any]]) -> bytes:
    request = ExportLogsServiceRequest()
    for service, group in groupby(sorted(entries, key=lambda e: e["service"]), key=lambda e: e["service"]):
        resource_logs = request.resource_logs.add()
        first = True
        scope = resource_logs.scope_logs.add()
        for entry in group:
            if first:
                resource_logs.resource.attributes.extend(
                    [KeyValue(key="service.name", value=_value(service)),
                     KeyValue(key="service.version", value=_value(entry["service_version"])),
                     KeyValue(key="deployment.environment.name", value=_value(entry["environment"]))]
                )  # fmt: skip
                first = False
            record = scope.log_records.add()
            record.time_unix_nano = int(entry["created_at"] * 1e9)
            record.severity_number = _SEVERITY[entry["level"]]
            record.body.string_value = entry["message"]
            record.trace_id = bytes.fromhex(entry["trace_id"])
            record.attributes.extend(
                KeyValue(key=name, value=_value(entry[field]))
                for field, name in _ATTRIBUTES.items()
                if field in entry
            )
            for key, value in entry.get("metadata", {}).items():
                record.attributes.append(KeyValue(key=key, value=_value(value)))
    return request.SerializeToString()


def _requests(port: int, payloads: Sequence[bytes], path: str, content_type: str) -> list[bytes]:
    out = []
    for payload in payloads:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                f"Content-Encoding: gzip\r\nContent-Length: {len(payload)}\r\n\r\n")  # fmt: skip
        out.append(head.encode() + payload)
    return out


def _best_ms(step: Callable[[bytes], object], payloads: Sequence[bytes], repeats: int) -> float:
    """The fastest of `repeats` passes over the payloads, per payload (= per 1000 records), in ms."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for payload in payloads:
            step(payload)
        best = min(best, (time.perf_counter() - started) / len(payloads))
    return round(best * 1000, 3)


def _pairs_only(payload: bytes) -> None:
    # The floor of reading a record's attributes through upb: each pair's key and value and which kind it
    # holds, nothing converted or kept.
    for resource_logs in ExportLogsServiceRequest.FromString(payload).resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                for pair in record.attributes:
                    _ = pair.key, pair.value.WhichOneof("value")


def stages(batches: list[list[dict[str, Any]]], repeats: int) -> list[dict[str, Any]]:
    """Each step of POST /logs's and POST /v1/logs's parse in this process, ms per batch of BATCH."""
    json_bodies = [body(b) for b in batches]
    protobufs = [protobuf(b) for b in batches]
    limit = 10_000
    steps = [
        ("json: decode, validate, build rows (app.intake.rows.parse)", json_bodies, lambda p: rows.parse(p, limit)),
        ("otlp: protobuf parse only (upb, in C)", protobufs, ExportLogsServiceRequest.FromString),
        ("otlp: every attribute's key and kind read, nothing kept (floor)", protobufs, _pairs_only),
        ("otlp: records to Python values (app.formats.otlp.scopes)", protobufs,
         lambda p: [s.records for s in otlp.scopes(p, otlp.PROTOBUF)]),
        ("otlp: + mapped to our fields (app.formats.otlp.entries)", protobufs,
         lambda p: otlp.entries(otlp.scopes(p, otlp.PROTOBUF))),
        ("otlp: + validated, rows built (the whole parse)", protobufs,
         lambda p: rows.parse_values(otlp.entries(otlp.scopes(p, otlp.PROTOBUF)), limit)),
    ]  # fmt: skip
    return [
        {"stage": name, "ms_per_batch": _best_ms(step, payloads, repeats)} for name, payloads, step in steps
    ]


def run(
    dsn: str,
    warmup: float,
    duration: float,
    progress: Callable[[str], None],
    repeats: int = STAGE_REPEATS,
    workers: int = 1,
) -> dict[str, Any]:
    factory = LogFactory(11)
    batches = [factory.batch(BATCH) for _ in range(16)]
    progress("otlp stages")
    parse_stages = stages(batches[:4], repeats)
    arms = {
        "json b1000-gzip-c8": ("/logs", "application/json", [gzipped(body(b)) for b in batches]),
        "otlp protobuf b1000-gzip-c8": (
            "/v1/logs",
            "application/x-protobuf",
            [gzipped(protobuf(b)) for b in batches],
        ),
    }
    results = []
    with http.server(dsn, "group", workers) as (process, port):
        for name, (path, content_type, payloads) in arms.items():
            progress(f"otlp {name}")
            asyncio.run(http._count(dsn, truncate=True))
            requests = _requests(port, payloads, path, content_type)
            with http.Sampler(process) as sampler:
                warm, measured, seconds = uvloop.run(
                    http.load(port, requests, CLIENTS, warmup, duration, counts=[BATCH] * len(requests))
                )
            stored = asyncio.run(http._count(dsn))
            acknowledged = warm.acknowledged + measured.acknowledged
            if stored != acknowledged:
                raise db.RowCountMismatch(f"{name}: {acknowledged} acknowledged but {stored} stored")
            ms = [latency * 1000 for latency in measured.latencies]
            results.append({
                "arm": name, "logs_per_s": round(measured.acknowledged / seconds, 1),
                "p50_ms": round(db.percentile(ms, 50), 3), "p99_ms": round(db.percentile(ms, 99), 3),
                "wire_bytes_per_request": round(sum(len(p) for p in payloads) / len(payloads)),
                "server_cpu": sampler.server_cpu, "postgres_cpu": sampler.postgres_cpu,
                "statuses": {str(k): v for k, v in sorted(measured.statuses.items())},
            })  # fmt: skip
    asyncio.run(http._count(dsn, truncate=True))
    return {"arms": results, "stages": parse_stages}
