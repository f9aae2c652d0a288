"""The service's counters and histograms, written in Prometheus' text format (``GET /metrics``).

A handful of series, updated from the event loop and the scoring thread; each update is one
dictionary or list operation, so a lock keeps them exact without costing the hot path much.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

# Seconds: from under a millisecond to the worst a caller should ever wait.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{suffix} {self.total:.6f}")
        out.append(f"{name}_count{suffix} {self.n}")
        return out


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.sources: defaultdict[str, int] = defaultdict(int)
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.model_loads: defaultdict[str, int] = defaultdict(int)  # outcome -> count

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            if route not in self.latency:
                self.latency[route] = Histogram(LATENCY_BUCKETS)
            self.latency[route].observe(seconds)
            if status >= 500:
                self.errors["server"] += 1
            elif status >= 400:
                self.errors["client"] += 1

    def answered(self, source: str) -> None:
        with self._lock:
            self.sources[source] += 1

    def batch(self, size: int) -> None:
        with self._lock:
            self.batch_size.observe(size)

    def model_load(self, outcome: str) -> None:
        with self._lock:
            self.model_loads[outcome] += 1

    def text(self, model: tuple[str, str] | None, live_events: int, users: int) -> str:
        """Every series, in Prometheus' text exposition format."""
        lines = [
            "# HELP seqrec_requests_total HTTP requests by route and status.",
            "# TYPE seqrec_requests_total counter",
        ]
        with self._lock:
            for (route, status), count in sorted(self.requests.items()):
                lines.append(f'seqrec_requests_total{{route="{route}",status="{status}"}} {count}')
            lines += [
                "# HELP seqrec_request_seconds Time from request to response, by route.",
                "# TYPE seqrec_request_seconds histogram",
            ]
            for route, histogram in sorted(self.latency.items()):
                lines += histogram.lines("seqrec_request_seconds", f'route="{route}"')
            lines += [
                "# HELP seqrec_errors_total Error responses: client (4xx) and server (5xx).",
                "# TYPE seqrec_errors_total counter",
            ]
            for kind in ("client", "server"):
                lines.append(f'seqrec_errors_total{{kind="{kind}"}} {self.errors[kind]}')
            lines += [
                "# HELP seqrec_answers_total Recommendation answers by where they came from.",
                "# TYPE seqrec_answers_total counter",
            ]
            for source, count in sorted(self.sources.items()):
                lines.append(f'seqrec_answers_total{{source="{source}"}} {count}')
            lines += [
                "# HELP seqrec_batch_size Requests scored together in one model batch.",
                "# TYPE seqrec_batch_size histogram",
                *self.batch_size.lines("seqrec_batch_size"),
                "# HELP seqrec_model_loads_total Model versions loaded, by outcome.",
                "# TYPE seqrec_model_loads_total counter",
            ]
            for outcome, count in sorted(self.model_loads.items()):
                lines.append(f'seqrec_model_loads_total{{outcome="{outcome}"}} {count}')
        lines += [
            "# HELP seqrec_model_info The model version serving now (1), by name and version.",
            "# TYPE seqrec_model_info gauge",
        ]
        if model is not None:
            lines.append(f'seqrec_model_info{{name="{model[0]}",version="{model[1]}"}} 1')
        lines += [
            "# HELP seqrec_live_events Events posted live and held in memory.",
            "# TYPE seqrec_live_events gauge",
            f"seqrec_live_events {live_events}",
            "# HELP seqrec_known_users Users with a history in the current build.",
            "# TYPE seqrec_known_users gauge",
            f"seqrec_known_users {users}",
        ]
        return "\n".join(lines) + "\n"
