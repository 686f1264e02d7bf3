//! Prometheus metrics over HTTP, where ZooKeeper's `PrometheusMetricsProvider` serves them
//! (`metricsProvider.httpHost`:`metricsProvider.httpPort`, default 0.0.0.0:7000, path
//! `/metrics`, the Prometheus text format).
//!
//! The gauges carry ZooKeeper's names: every number the `mntr` four-letter word reports,
//! without its `zk_` prefix (`znode_count`, `watch_count`, `ephemerals_count`,
//! `num_alive_connections`, `approximate_data_size`, `packets_received`, `avg_latency`,
//! and on a leader `learners`, `synced_followers`, `pending_syncs` ...), which is how
//! ZooKeeper names the same gauges, so dashboards and alerts built on ZooKeeper's
//! provider carry over. So do these summaries and counters of ZooKeeper's `ServerMetrics`,
//! under the same names and units:
//!
//! - summaries (`{quantile="0.5"|"0.9"|"0.99"}`, `_sum`, `_count`), in milliseconds unless
//!   said: `fsynctime` (each fsync of the log), `sync_processor_batch_size` (transactions
//!   per fsync), `snapshottime` (writing one snapshot), `readlatency` and `updatelatency`
//!   (a request's arrival to its answer), `election_time` (LOOKING to a role), `dbinittime`
//!   (loading the data dir at startup). ZooKeeper's quantiles cover a sliding ten
//!   minutes; Corral's cover the latest 1,024 observations. `_sum` and `_count` cover
//!   the process's life in both.
//! - counters: `looking_count` (elections entered), `proposal_count` and `commit_count`
//!   (on the leader), `diff_count` and `snap_count` (learners synced by DIFF, by SNAP),
//!   `connection_request_count` (client connections accepted).
//!
//! Corral adds histograms of its own:
//!
//! - `corral_fsync_seconds`: each fsync of the transaction log;
//! - `corral_group_commit_transactions`: transactions one fsync made durable;
//! - `corral_queue_ready_tasks`, `corral_queue_delayed_tasks`, `corral_queue_running_tasks`,
//!   `corral_queue_dead_tasks` (label `queue`): the depth of each task queue, counted
//!   from its znodes (the layout of docs/queue.md, under `/corral/queues`).

use crate::core::Msg;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus::core::Collector;
use prometheus::proto::{Metric, MetricFamily, MetricType, Quantile};
use prometheus::{Encoder, Gauge, Histogram, HistogramOpts, IntCounter, Opts, Registry, TextEncoder};
use std::sync::{LazyLock, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// The process's metrics (the core, the log writer, the member's sync thread and the
/// snapshot thread record into them).
pub struct Metrics {
    registry: Registry,
    pub fsync_seconds: Histogram,
    pub group_commit: Histogram,
    pub fsync_time: Summary,
    pub batch_size: Summary,
    pub snapshot_time: Summary,
    pub read_latency: Summary,
    pub update_latency: Summary,
    pub election_time: Summary,
    pub db_init_time: Summary,
    pub looking: IntCounter,
    pub proposals: IntCounter,
    pub commits: IntCounter,
    pub diffs: IntCounter,
    pub snaps: IntCounter,
    pub connections: IntCounter,
}

impl Metrics {
    /// Records one fsync of the log, which made `txns` transactions durable.
    pub fn fsynced(&self, took: std::time::Duration, txns: usize) {
        self.fsync_seconds.observe(took.as_secs_f64());
        self.group_commit.observe(txns as f64);
        self.fsync_time.observe(ms(took));
        self.batch_size.observe(txns as f64);
    }

    fn summaries(&self) -> [&Summary; 7] {
        [
            &self.fsync_time,
            &self.batch_size,
            &self.snapshot_time,
            &self.read_latency,
            &self.update_latency,
            &self.election_time,
            &self.db_init_time,
        ]
    }
}

/// A duration in milliseconds, as ZooKeeper's summaries count time.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How many recent observations a [`Summary`]'s quantiles are taken over.
const WINDOW: usize = 1024;

/// A ZooKeeper-style summary: the count and sum of every observation, and the 0.5, 0.9
/// and 0.99 quantiles of the latest [`WINDOW`].
pub struct Summary {
    name: &'static str,
    help: &'static str,
    state: Mutex<SummaryState>,
}

#[derive(Default)]
struct SummaryState {
    count: u64,
    sum: f64,
    recent: Vec<f64>,
}

impl Summary {
    pub fn new(name: &'static str, help: &'static str) -> Summary {
        Summary { name, help, state: Mutex::default() }
    }

    pub fn observe(&self, v: f64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (s.count % WINDOW as u64) as usize;
        if s.recent.len() < WINDOW {
            s.recent.push(v);
        } else {
            s.recent[slot] = v;
        }
        s.count += 1;
        s.sum += v;
    }

    fn family(&self) -> MetricFamily {
        let (count, sum, mut recent) = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (s.count, s.sum, s.recent.clone())
        };
        recent.sort_by(f64::total_cmp);
        let quantiles = [0.5, 0.9, 0.99]
            .into_iter()
            .map(|q| {
                let mut quantile = Quantile::default();
                quantile.set_quantile(q);
                // The nearest rank; NaN (as Prometheus clients report) with no data.
                let rank = ((q * recent.len() as f64).ceil() as usize).saturating_sub(1);
                quantile.set_value(recent.get(rank).copied().unwrap_or(f64::NAN));
                quantile
            })
            .collect();
        let mut summary = prometheus::proto::Summary::default();
        summary.set_sample_count(count);
        summary.set_sample_sum(sum);
        summary.set_quantile(quantiles);
        let mut metric = Metric::default();
        metric.set_summary(summary);
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_string());
        family.set_help(self.help.to_string());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(vec![metric]);
        family
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
        let registry = Registry::new();
        let fsync_seconds = Histogram::with_opts(
            HistogramOpts::new("corral_fsync_seconds", "Time of each fsync of the transaction log")
                .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid histogram");
        let group_commit = Histogram::with_opts(
            HistogramOpts::new("corral_group_commit_transactions", "Transactions made durable by one fsync")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 14).expect("valid buckets")),
        )
        .expect("valid histogram");
        registry.register(Box::new(fsync_seconds.clone())).expect("one registration");
        registry.register(Box::new(group_commit.clone())).expect("one registration");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("one registration");
            c
        };
        Metrics {
            fsync_seconds,
            group_commit,
            fsync_time: Summary::new("fsynctime", "Time of each fsync of the transaction log, ms"),
            batch_size: Summary::new("sync_processor_batch_size", "Transactions made durable by one fsync"),
            snapshot_time: Summary::new("snapshottime", "Time to write one snapshot, ms"),
            read_latency: Summary::new("readlatency", "Read requests from arrival to answer, ms"),
            update_latency: Summary::new("updatelatency", "Write requests from arrival to answer, ms"),
            election_time: Summary::new("election_time", "Time from entering LOOKING to having a role, ms"),
            db_init_time: Summary::new("dbinittime", "Time to load the data directory at startup, ms"),
            looking: counter("looking_count", "Times this server entered LOOKING"),
            proposals: counter("proposal_count", "Transactions this server proposed as leader"),
            commits: counter("commit_count", "Transactions this server committed as leader"),
            diffs: counter("diff_count", "Learners this leader synced by DIFF"),
            snaps: counter("snap_count", "Learners this leader synced by SNAP"),
            connections: counter("connection_request_count", "Client connections accepted"),
            registry,
        }
    });
    &METRICS
}

/// How many tasks each queue holds, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: String,
    pub ready: u64,
    pub delayed: u64,
    pub running: u64,
    pub dead: u64,
}

/// Where `corral-queue` keeps its queues (docs/queue.md).
const QUEUES: &str = "/corral/queues";

/// Counts every queue's tasks from the tree: ready and delayed entries sit three (four)
/// levels down, in buckets; running and dead tasks are one node each.
pub fn queue_depths(tree: &corral_tree::DataTree) -> Vec<QueueDepth> {
    let Some(root) = tree.get(QUEUES) else { return Vec::new() };
    // The number of nodes `levels` below `path` (1: its children).
    fn below(tree: &corral_tree::DataTree, path: &str, levels: u32) -> u64 {
        let Some(n) = tree.get(path) else { return 0 };
        if levels == 1 {
            return n.num_children() as u64;
        }
        n.child_names().iter().map(|c| below(tree, &format!("{path}/{c}"), levels - 1)).sum()
    }
    root.child_names()
        .iter()
        .map(|q| {
            let base = format!("{QUEUES}/{q}");
            QueueDepth {
                queue: q.to_string(),
                ready: below(tree, &format!("{base}/ready"), 3),
                delayed: below(tree, &format!("{base}/delayed"), 4),
                running: below(tree, &format!("{base}/running"), 1),
                dead: below(tree, &format!("{base}/dead"), 1),
            }
        })
        .collect()
}

/// The `/metrics` page: the numbers of an `mntr` answer as ZooKeeper's gauges, Corral's
/// histograms, and the task queues' depths.
pub fn render(mntr: &str, queues: &[QueueDepth]) -> String {
    let mut families = metrics().registry.gather();
    families.extend(metrics().summaries().iter().map(|s| s.family()));
    let depth = |name: &str, help: &str, value: fn(&QueueDepth) -> u64| {
        let g = prometheus::GaugeVec::new(Opts::new(name, help), &["queue"]).expect("a valid gauge");
        for q in queues {
            g.with_label_values(&[q.queue.as_str()]).set(value(q) as f64);
        }
        g.collect()
    };
    if !queues.is_empty() {
        families.extend(depth("corral_queue_ready_tasks", "Tasks ready to be taken", |q| q.ready));
        families.extend(depth("corral_queue_delayed_tasks", "Tasks waiting for their time (delayed or retrying)", |q| q.delayed));
        families.extend(depth("corral_queue_running_tasks", "Tasks claimed by a worker", |q| q.running));
        families.extend(depth("corral_queue_dead_tasks", "Dead letters", |q| q.dead));
    }
    for line in mntr.lines() {
        let Some((key, value)) = line.split_once('\t') else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let name = key.strip_prefix("zk_").unwrap_or(key);
        let Ok(gauge) = Gauge::with_opts(Opts::new(name, format!("{key} as mntr reports it"))) else { continue };
        gauge.set(value);
        families.extend(gauge.collect());
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out).expect("text encoding of valid families");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// Serves `/metrics` on `listener`, asking the core for `mntr` on each scrape. A
/// connection idle for 30 s is closed ([`crate::http`]).
pub async fn serve(listener: TcpListener, core: mpsc::Sender<Msg>) {
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(core);
    if let Err(e) = crate::http::serve(listener, Some(crate::http::DEFAULT_IDLE), app).await {
        tracing::error!(error = %e, "the metrics endpoint stopped");
    }
}

async fn scrape(State(core): State<mpsc::Sender<Msg>>) -> impl IntoResponse {
    let (reply, answer) = oneshot::channel();
    let (mntr, queues) = match core.send(Msg::Metrics { reply }).await {
        Ok(()) => answer.await.unwrap_or_default(),
        Err(_) => Default::default(),
    };
    ([(CONTENT_TYPE, TextEncoder::new().format_type().to_string())], render(&mntr, &queues))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mntr_numbers_become_gauges_with_zookeepers_names() {
        metrics().fsync_seconds.observe(0.0002);
        metrics().group_commit.observe(12.0);
        let queues = [QueueDepth { queue: "mail".into(), ready: 3, delayed: 1, running: 2, dead: 0 }];
        let page = render("zk_version\t3.8.4-corral\nzk_znode_count\t5\nzk_avg_latency\t0.25\nzk_server_state\tleader\n", &queues);
        assert!(page.contains("corral_queue_ready_tasks{queue=\"mail\"} 3\n"), "{page}");
        assert!(page.contains("corral_queue_running_tasks{queue=\"mail\"} 2\n"), "{page}");
        assert!(page.contains("\nznode_count 5\n"), "{page}");
        assert!(page.contains("\navg_latency 0.25\n"), "{page}");
        assert!(page.contains("# TYPE znode_count gauge"), "{page}");
        assert!(!page.contains("version") && !page.contains("server_state"), "only numbers: {page}");
        assert!(page.contains("corral_fsync_seconds_bucket{le=\"0.0002\"}"), "{page}");
        assert!(page.contains("corral_group_commit_transactions_count"), "{page}");
    }

    #[test]
    fn summaries_report_count_sum_and_nearest_rank_quantiles() {
        let s = Summary::new("t_summary", "a test");
        let f = s.family();
        assert!(f.get_metric()[0].get_summary().get_quantile()[0].value().is_nan(), "no data yet");
        for v in 1..=100 {
            s.observe(v as f64);
        }
        let f = s.family();
        let summary = f.get_metric()[0].get_summary();
        assert_eq!((summary.sample_count(), summary.sample_sum()), (100, 5050.0));
        let q: Vec<(f64, f64)> = summary.get_quantile().iter().map(|q| (q.quantile(), q.value())).collect();
        assert_eq!(q, [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)]);
        // Past the window, the quantiles forget the oldest values; the count and sum do not.
        for _ in 0..WINDOW {
            s.observe(1000.0);
        }
        let f = s.family();
        let summary = f.get_metric()[0].get_summary();
        assert_eq!(summary.sample_count(), 100 + WINDOW as u64);
        assert_eq!(summary.get_quantile()[0].value(), 1000.0);
        let mut out = Vec::new();
        TextEncoder::new().encode(&[f], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("# TYPE t_summary summary\n") && text.contains("t_summary{quantile=\"0.99\"} 1000\n"), "{text}");
    }
}
