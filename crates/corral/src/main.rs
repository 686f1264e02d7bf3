//! `corral`: one binary for the server and its tools.

mod bench;
mod inspect;
mod queue_cli;
mod zkcli;

/// mimalloc instead of glibc's malloc: a create allocates a dozen small blocks (paths,
/// ACLs, records), and with glibc's allocator malloc and free took 16% of a leader's
/// time; with mimalloc a 3-member ensemble takes 20-30% more creates a second
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use corral_server::config::{is_zookeeper_key, Config};
use corral_server::Server;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "corral", version, about = "A ZooKeeper-compatible coordination service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server. With no arguments: standalone on 127.0.0.1:2181, data in ./corral-data.
    Server(ServerArgs),
    /// Print and verify what a server wrote to disk (changes nothing).
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// The task queue: push tasks, run workers, look and manage (docs/queue.md).
    #[command(subcommand)]
    Queue(queue_cli::QueueCommand),
    /// Load any ZooKeeper-compatible server and measure throughput and latency.
    Bench(bench::BenchArgs),
    /// A zkCli-compatible shell: `corral cli -server HOST:PORT [CMD ARGS...]` runs one
    /// command; without one it is interactive (history, completion).
    Cli {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum InspectCommand {
    /// The transactions of a log directory (<dataDir>/log) or one segment file, with every
    /// checksum verified; exits 1 when something does not verify.
    Log {
        path: PathBuf,
        /// One JSON object per transaction instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The nodes and sessions of a snapshot file (<dataDir>/snapshots/snapshot.<zxid>),
    /// after verifying its checksum; exits 1 when it does not verify.
    Snapshot {
        path: PathBuf,
        /// One JSON object per node instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Parser)]
struct ServerArgs {
    /// A ZooKeeper zoo.cfg file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Client port (overrides clientPort).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory (overrides dataDir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Super user digest, `super:<base64 sha1>` (overrides superDigest).
    #[arg(long, value_name = "DIGEST")]
    super_digest: Option<String>,
    /// Log as JSON lines instead of human-readable text (also zoo.cfg's logFormat=json).
    #[arg(long)]
    log_json: bool,
    /// What to log: info, warn, debug, or per module (`corral_server=debug,info`).
    /// Wins over RUST_LOG and zoo.cfg's logLevel; the default is info.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    // First of all, before the allocator touches its first pages.
    let thp_off = disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server(args, thp_off),
        Command::Queue(cmd) => queue_cli::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Cli { args } => zkcli::main(args),
        Command::Inspect(InspectCommand::Log { path, json }) => ExitCode::from(inspect::log(&path, json) as u8),
        Command::Inspect(InspectCommand::Snapshot { path, json }) => {
            ExitCode::from(inspect::snapshot(&path, json) as u8)
        }
    }
}

/// Turns transparent huge pages off for this process (the server above all). mimalloc
/// asks for huge pages, and where the kernel compacts memory to find one (`defrag=madvise`,
/// Debian's default) each new 2 MiB the tree grows into stopped the server for about 5 ms;
/// huge pages half filled also counted in RSS. With 1 M znodes, turning them off took RSS
/// after a restart from 199 to 184 MiB and recovery from 1.2-1.4 s to 0.7-0.8 s
/// (docs/benchmarks.md). Redis and MongoDB advise the same for the same reasons.
fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Has mimalloc commit its arena as it is used rather than all at once. With eager
/// commit (its default on Linux), memory it purges stays in the resident set: 3.3 MB more
/// RSS both idle and with 1 M znodes after a restart. The option must be set before the
/// first allocation reserves the arena, so this runs as a constructor, before `main`
/// and before the Rust runtime allocates anything.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_MEMORY_ON_DEMAND: extern "C" fn() = {
    extern "C" fn commit_memory_on_demand() {
        /// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_t`
        /// (`c_src/mimalloc/v3/include/mimalloc.h` of libmimalloc-sys 0.1.49, which
        /// Cargo.toml pins for this reason).
        const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        // SAFETY: sets one of mimalloc's integer options; it takes no pointers.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
    }
    commit_memory_on_demand
};

fn server(args: ServerArgs, thp_off: bool) -> ExitCode {
    let mut cfg = match &args.config {
        // myid is read below, once --data-dir may have moved the data directory.
        Some(path) => match Config::parse_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("corral: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    // The level: --log-level, else RUST_LOG, else zoo.cfg's logLevel, else info.
    let level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
        .or_else(|| cfg.log_level.clone())
        .unwrap_or_else(|| "info".to_string());
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("corral: log level '{level}' (from --log-level, RUST_LOG or logLevel): {e}");
            return ExitCode::from(2);
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_json || cfg.log_json {
        builder.json().init();
    } else {
        builder.init();
    }

    for key in &cfg.unknown_keys {
        if is_zookeeper_key(key) {
            tracing::info!(key = %key, "ignoring a zoo.cfg key this version of Corral does not use");
        } else {
            tracing::warn!(key = %key, "ignoring unknown zoo.cfg key");
        }
    }
    if let Some(p) = args.port {
        cfg.client_port = p;
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(d) = args.super_digest {
        if !d.contains(':') {
            eprintln!("corral: --super-digest must look like user:base64hash");
            return ExitCode::from(2);
        }
        cfg.super_digest = Some(d);
    }
    if let Err(e) = cfg.load_my_id() {
        eprintln!("corral: {e}");
        return ExitCode::from(2);
    }
    if let (Some(ignored), Some(ensemble)) = (cfg.ignored_peer_type(), &cfg.ensemble) {
        tracing::warn!(
            peer_type = %ignored,
            role = %ensemble.me().role,
            "peerType does not match this server's role in its server.N line; using the server.N line"
        );
    }

    if !thp_off {
        tracing::debug!("could not turn transparent huge pages off for this process");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let server = match Server::bind(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("corral: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!(addr = %server.local_addr(), "corral server listening");
        // SIGTERM or SIGINT: answer what is in flight, close the connections (clients
        // move to another member), exit.
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM; shutting down"),
            }
        };
        if let Err(e) = server.run_until(stop).await {
            tracing::error!(error = %e, "stopped");
            return ExitCode::from(70);
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

