"""Settings of the server: the ``serve:`` section of domainlm.yaml, ``domainlm serve``'s options."""

from __future__ import annotations

from pydantic import Field

from domainlm.config import Section


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    db: str = Field("sqlite:///artifacts/feedback.db", description="SQLAlchemy URL of the feedback store.")
    privacy: str = Field(
        "keep-on-edge",
        pattern="^(keep-on-edge|redact|refuse)$",
        description="Router: what a request with personal data does -- stays on the edge model (keep-on-edge), "
        "goes to the cloud with its PII replaced by placeholders (redact), or is refused with 403 (refuse).",
    )
    store_redact_pii: bool = Field(True, description="Redact personal data in what the feedback store keeps.")
