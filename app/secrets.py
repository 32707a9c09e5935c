"""Database credentials from AWS Secrets Manager (DATABASE_SECRET_ARN), as RDS stores them.

boto3 is part of the Lambda Python runtime and is not a dependency of this project; elsewhere, install it
to use this setting.
"""

from __future__ import annotations

import json
from typing import Any


def fetch(secret_arn: str) -> dict[str, Any]:
    """The secret's JSON: host, port, username, password and optionally dbname (RDS's format)."""
    import boto3

    response = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    secret = json.loads(response["SecretString"])
    missing = [key for key in ("host", "username", "password") if key not in secret]
    if missing:
        raise ValueError(f"secret {secret_arn} lacks {', '.join(missing)}")
    return secret
