"""Secrets from AWS Secrets Manager: database credentials (DATABASE_SECRET_ARN, as RDS stores them) and
API keys (API_KEYS_SECRET_ARN).

boto3 is part of the Lambda Python runtime and is not a dependency of this project; elsewhere, install it
to use these settings.
"""

from __future__ import annotations

import json
from typing import Any


def _secret_json(secret_arn: str) -> dict[str, Any]:
    import boto3

    response = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    return json.loads(response["SecretString"])


def fetch(secret_arn: str) -> dict[str, Any]:
    """The database secret's JSON: host, port, username, password and optionally dbname (RDS's format)."""
    secret = _secret_json(secret_arn)
    missing = [key for key in ("host", "username", "password") if key not in secret]
    if missing:
        raise ValueError(f"secret {secret_arn} lacks {', '.join(missing)}")
    return secret


def api_keys(secret_arn: str) -> tuple[str, str]:
    """The API-keys secret: `{"API_KEYS": "k1,k2", "INGEST_API_KEYS": "k3"}` (either may be absent)."""
    secret = _secret_json(secret_arn)
    if not isinstance(secret.get("API_KEYS", ""), str) or not isinstance(
        secret.get("INGEST_API_KEYS", ""), str
    ):
        raise TypeError(f"secret {secret_arn}: API_KEYS and INGEST_API_KEYS must be comma-separated strings")
    if "API_KEYS" not in secret and "INGEST_API_KEYS" not in secret:
        raise ValueError(f"secret {secret_arn} has neither API_KEYS nor INGEST_API_KEYS")
    return secret.get("API_KEYS", ""), secret.get("INGEST_API_KEYS", "")
