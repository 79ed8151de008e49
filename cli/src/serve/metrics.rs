//! The service's Prometheus metrics, rendered in the text exposition format on `GET /metrics`.
//!
//! Counters and histograms are lock-free atomics updated on the request path (token timings are taken on
//! the engine thread, as tokens are produced); gauges (queue depth, active sequences, cache sizes) are read
//! from the engine when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use deepedge::scheduler::EngineStats;

/// Upper bounds of the time-to-first-token buckets, seconds.
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the inter-token latency buckets, seconds.
const ITL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram with fixed buckets.
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Everything `/metrics` reports that the engine does not keep itself.
pub struct Metrics {
    /// Responses by HTTP status.
    requests: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    /// Generations that stopped because the client went away.
    cancelled: AtomicU64,
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            time_to_first_token: Histogram::new(TTFT_BUCKETS),
            inter_token_latency: Histogram::new(ITL_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry(status).or_default() += 1;
        }
    }

    pub fn add_tokens(&self, prompt: usize, generated: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
    }

    pub fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_first_token(&self, d: Duration) {
        self.time_to_first_token.observe(d);
    }

    pub fn observe_inter_token(&self, d: Duration) {
        self.inter_token_latency.observe(d);
    }

    /// The exposition text; `engine` is `None` while the model loads.
    pub fn render(&self, engine: Option<EngineStats>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let _ = writeln!(
            out,
            "# HELP deepedge_requests_total HTTP responses by status code.\n# TYPE deepedge_requests_total counter"
        );
        if let Ok(map) = self.requests.lock() {
            for (status, n) in map.iter() {
                let _ = writeln!(out, "deepedge_requests_total{{status=\"{status}\"}} {n}");
            }
        }
        counter(
            &mut out,
            "deepedge_prompt_tokens_total",
            "Prompt tokens of finished generation and embedding requests.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "deepedge_generated_tokens_total",
            "Tokens generated.",
            self.generated_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "deepedge_requests_cancelled_total",
            "Generations stopped because the client disconnected.",
            self.cancelled.load(Ordering::Relaxed),
        );
        let stats = engine.unwrap_or_default();
        counter(
            &mut out,
            "deepedge_prefix_cache_hits_total",
            "Requests that reused a cached prompt prefix.",
            stats.prefix_hits,
        );
        counter(
            &mut out,
            "deepedge_prefix_cache_tokens_total",
            "Prompt tokens copied from the prefix cache instead of computed.",
            stats.prefix_tokens_reused,
        );
        counter(
            &mut out,
            "deepedge_engine_steps_total",
            "Batched forward passes run.",
            stats.steps,
        );
        let gauges = [
            (
                "deepedge_model_loaded",
                "1 once the model is loaded and serving.",
                u64::from(engine.is_some()),
            ),
            (
                "deepedge_queue_depth",
                "Requests waiting for a free sequence.",
                stats.queued as u64,
            ),
            (
                "deepedge_active_sequences",
                "Sequences being prefilled or decoded.",
                stats.active as u64,
            ),
            (
                "deepedge_prefix_cache_entries",
                "Prefixes held by the prefix cache.",
                stats.prefix_entries as u64,
            ),
            (
                "deepedge_prefix_cache_bytes",
                "KV memory held by the prefix cache.",
                stats.prefix_bytes as u64,
            ),
            (
                "deepedge_kv_cache_bytes",
                "KV memory allocated over all sequences.",
                stats.kv_allocated_bytes as u64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        self.time_to_first_token.render(
            &mut out,
            "deepedge_time_to_first_token_seconds",
            "From accepting a request to its first generated token.",
        );
        self.inter_token_latency.render(
            &mut out,
            "deepedge_inter_token_latency_seconds",
            "Between consecutive generated tokens of a request.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counted_once() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 5.55\n"), "{out}");
    }
}
