"""Prometheus metrics of one server (requests, latency, time to first token, tokens, feedback, router).

Uses prometheus_client with a registry per app, so two apps in one process (tests) never share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        self.plugin_seconds = Histogram("domainlm_plugin_call_seconds", "Wall time of plugin tool calls run by the server",
                                        ["tool"], buckets=_LATENCY_BUCKETS, registry=r)
        # kind: error (the tool raised), timeout, invalid_arguments, not_run (max_steps reached, or beside a client call)
        self.plugin_errors = Counter("domainlm_plugin_call_errors_total", "Plugin tool calls that gave the model an error",
                                     ["tool", "kind"], registry=r)
        self.model_swaps = Counter("domainlm_model_swaps_total",
                                   "Times a promoted or rolled-back registry version was swapped in", registry=r)
        self.route = Counter("domainlm_router_decisions_total", "Router decisions", ["target", "reason"], registry=r)
        self.cloud_tokens_saved = Counter(
            "domainlm_router_cloud_tokens_saved_total",
            "Prompt + completion tokens answered on the edge instead of the cloud model", registry=r)

    def watch_upstreams(self, models: Callable[[], Iterable]) -> None:
        """Export the replicas of every OpenAI-compatible model ``models()`` returns (ServedModels), read
        at scrape time: the model swaps on promotion and the router holds two."""
        self.registry.register(UpstreamCollector(models))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class UpstreamCollector:
    """Per-replica counts of ``OpenAIModel.replicas`` (in flight, up, requests, failures) at scrape time."""

    def __init__(self, models: Callable[[], Iterable]):
        self.models = models

    def collect(self):
        labels = ["model", "replica"]
        in_flight = GaugeMetricFamily("domainlm_upstream_in_flight", "Requests in flight per upstream replica", labels=labels)
        up = GaugeMetricFamily("domainlm_upstream_up", "1 while the replica takes requests, 0 in its cool-off", labels=labels)
        requests = CounterMetricFamily("domainlm_upstream_requests", "Requests sent per upstream replica", labels=labels)
        failures = CounterMetricFamily("domainlm_upstream_failures",
                                       "Refused or dropped connections, timeouts and 5xx answers per upstream replica", labels=labels)
        for served in self.models():
            for replica in getattr(served.backend, "replicas", ()):
                key = [served.name, replica.url]
                in_flight.add_metric(key, replica.in_flight)
                up.add_metric(key, 1.0 if replica.up() else 0.0)
                requests.add_metric(key, replica.requests)
                failures.add_metric(key, replica.failures)
        yield from (in_flight, up, requests, failures)
