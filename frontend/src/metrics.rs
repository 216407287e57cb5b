//! Prometheus metrics: requests by route and status, request latency, jobs
//! submitted, reads of ended jobs by where they were served from.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub jobs_submitted: IntCounter,
    pub ended_job_reads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("lanzadera".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )?;
        let jobs_submitted = IntCounter::new("jobs_submitted_total", "Jobs accepted")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let ended_job_reads = IntCounterVec::new(
            Opts::new(
                "ended_job_reads_total",
                "Reads of ended jobs, by where they were served from (memory, database)",
            ),
            &["from"],
        )?;
        registry.register(Box::new(jobs_submitted.clone()))?;
        registry.register(Box::new(ended_job_reads.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            jobs_submitted,
            ended_job_reads,
        })
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
