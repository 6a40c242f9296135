"""Prometheus metrics of one server (requests, latency, time to first token, tokens, feedback, router).

Uses prometheus_client with a registry per app, so two apps in one process (tests) never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("domainlm_requests_total", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram("domainlm_request_seconds", "Request wall time", ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("domainlm_time_to_first_token_seconds", "Time to the first streamed token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.completion_tokens = Counter("domainlm_completion_tokens_total", "Generated tokens", ["model"], registry=r)
        self.prompt_tokens = Counter("domainlm_prompt_tokens_total", "Prompt tokens", ["model"], registry=r)
        self.in_flight = Gauge("domainlm_generations_in_flight", "Generations running or waiting", registry=r)
        self.feedback = Counter("domainlm_feedback_total", "Acknowledged (stored) feedback by kind", ["kind"], registry=r)
        self.rate_limited = Counter("domainlm_rate_limited_total", "Requests refused by the per-key rate limit", ["key"], registry=r)
        self.queue_full = Counter("domainlm_queue_full_total", "Chat completions refused because the queue was full", registry=r)
        self.auth_failures = Counter("domainlm_auth_failures_total", "Requests without a valid API key", registry=r)
        self.plugin_calls = Counter("domainlm_plugin_calls_total", "Plugin tool calls run by the server", ["tool"], registry=r)
        self.model_swaps = Counter("domainlm_model_swaps_total",
                                   "Times a promoted or rolled-back registry version was swapped in", registry=r)
        self.route = Counter("domainlm_router_decisions_total", "Router decisions", ["target", "reason"], registry=r)
        self.cloud_tokens_saved = Counter(
            "domainlm_router_cloud_tokens_saved_total",
            "Prompt + completion tokens answered on the edge instead of the cloud model", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
