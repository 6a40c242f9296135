"""The request bodies the API accepts, and how a chat request reads as the model's messages.

The fields are OpenAI's, so OpenAI clients work unchanged. Sampling options that change the answer are
declared here so the route can honour them or refuse them by name (never ignore them silently); other
OpenAI options (``user``, ``parallel_tool_calls``, ``store``, ...) do not change the answer and are
accepted and ignored (``extra="ignore"``), because clients send them by default.
domainlm's own endpoints forbid unknown fields: a typo there is the caller's mistake to hear about.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domainlm.parsing import decode_arguments

MAX_CHOICES = 16  # n: choices are generated one after another, so each one costs a whole answer's time


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """What chat and text completions share: the model, streaming and every sampling option."""

    model_config = ConfigDict(extra="ignore")
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int | None = None
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    user: str | None = None


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    response_format: dict | None = None
    # domainlm extras: ground the answer in the knowledge base; let the model call plugin tools.
    kb: bool | dict | None = None
    plugins: bool = False


class CompletionRequest(SamplingRequest):
    """OpenAI's legacy text completion: the prompt is continued as it is, without the chat template."""

    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20)  # legacy: the number of alternatives per token
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response_id: str = Field(min_length=1)
    rating: Literal["up", "down"] | None = None
    correction: str | None = None
    comment: str | None = None
    rejected_id: str | None = Field(None, description="pairwise choice: response_id was preferred over this one")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=50)


class ChatFileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1)
    content_base64: str
    question: str | None = None  # None: summarise
    # With no question: a structured summary (court: parties, claims, facts, reasoning, decision; meeting:
    # attendees, agenda, decisions, actions), every item cited to its span of the file.
    structure: Literal["court", "meeting"] | None = None


class ExportRequest(BaseModel):
    """``POST /v1/feedback/export``: what ``domainlm feedback export`` takes, and ``limit`` to page a large store
    (the next page is ``since`` = the answer's ``last_id``)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["kto", "dpo", "sft", "raw"]
    conversational: bool = False  # kto/dpo: TRL's conversational rows instead of strings
    since: int = Field(0, ge=0, description="only feedback with an id above this")
    limit: int | None = Field(None, ge=1, description="at most this many feedback records (not rows)")
    output: Literal["json", "jsonl"] = "json"  # jsonl: the rows as the CLI writes them, one a line


VERSION = r"^v[0-9]+$"  # a registry's version folder (v0001): a name, never a path


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(pattern=VERSION)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(None, pattern=VERSION, description="an earlier version; None: the one before current")


def message_text(content: str | list[dict] | None) -> str:
    """OpenAI content may be a list of parts; the text parts, joined, are what a text model sees."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def to_messages(request: ChatRequest) -> list[dict]:
    """The conversation as chat-template messages: text content, ``developer`` as ``system``, and tool-call
    arguments decoded from the JSON strings OpenAI sends (the template writes them as JSON itself)."""
    out = []
    for m in request.messages:
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": message_text(m.content)}
        if m.tool_calls:
            msg["tool_calls"] = [
                {**tc, "function": {**tc.get("function", {}), "arguments": decode_arguments(tc.get("function", {}).get("arguments"))}}
                for tc in m.tool_calls
            ]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return out
