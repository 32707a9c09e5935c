"""The formats we accept, each turned into entries of our schema before the shared intake stores them.

    shippers.py   JSON arrays and NDJSON from log shippers (POST /logs)
    otlp.py       OTLP/HTTP logs, protobuf and JSON (POST /v1/logs)
    loki.py       Loki push, protobuf+snappy and JSON (POST /loki/api/v1/push)

Our own `{"logs": [...]}` is app/intake/rows.py: every other format ends in the same validation there.
"""
