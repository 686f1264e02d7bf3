//! Prometheus metrics over HTTP, where ZooKeeper's `PrometheusMetricsProvider` serves them
//! (`metricsProvider.httpHost`:`metricsProvider.httpPort`, default 0.0.0.0:7000, path
//! `/metrics`, the Prometheus text format).
//!
//! The gauges carry ZooKeeper's names: every number the `mntr` four-letter word reports,
//! without its `zk_` prefix (`znode_count`, `watch_count`, `ephemerals_count`,
//! `num_alive_connections`, `approximate_data_size`, `packets_received`, `avg_latency`,
//! and on a leader `learners`, `synced_followers`, `pending_syncs` ...), which is how
//! ZooKeeper names the same gauges, so dashboards and alerts built on ZooKeeper's
//! provider carry over. Corral adds histograms of its own:
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
use prometheus::{Encoder, Gauge, Histogram, HistogramOpts, Opts, Registry, TextEncoder};
use std::sync::LazyLock;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Corral's own metrics, process-wide (the log writer and the member's sync thread
/// record into them).
pub struct Metrics {
    registry: Registry,
    pub fsync_seconds: Histogram,
    pub group_commit: Histogram,
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
        Metrics { registry, fsync_seconds, group_commit }
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

/// Serves `/metrics` on `listener`, asking the core for `mntr` on each scrape.
pub async fn serve(listener: TcpListener, core: mpsc::Sender<Msg>) {
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(core);
    if let Err(e) = axum::serve(listener, app).await {
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
}
