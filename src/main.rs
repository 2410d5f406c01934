//! The `outpost` command line: `run`, `demo`, `check-config`, `purge` (and `purge log`),
//! `inspect`, `ca`, `sample-origin`.

#![forbid(unsafe_code)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod admin_client;
mod ca;
mod config;
mod demo;
mod inspect_cli;
mod purge_cli;
mod purge_log;
mod reload;
mod reload_cli;
mod run;
mod startup;

// jemalloc instead of glibc's malloc: a cache inserts and evicts millions of small objects an
// hour from many threads, and jemalloc returns freed memory instead of leaving it fragmented
// across per-thread arenas (benches/soak, docs/benchmarks.md "Soak"). Feature `jemalloc`, on
// by default.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use config::NodeConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Edge caching node: CDN edge, origin shield, geo-DNS and telemetry in one binary"
)]
struct Cli {
    /// Worker threads (default: one per core). `OUTPOST_WORKERS` sets it too.
    #[arg(long, global = true, env = "OUTPOST_WORKERS")]
    workers: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start every role the config file configures.
    Run {
        /// The node config (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the whole system on loopback with a sample origin, and print what to try.
    Demo,
    /// Validate a config file; report every problem with file, line and key.
    CheckConfig {
        /// The node config (TOML).
        file: PathBuf,
    },
    /// Purge cached objects on every node, through one node's admin API; `purge log` prints
    /// the recent purges.
    Purge(purge_cli::PurgeCmd),
    /// Show what a node's caches hold for a URL: keys, tiers, variants, freshness, headers.
    Inspect(inspect_cli::InspectArgs),
    /// Make a running node re-read its config file (as SIGHUP does), and print what changed.
    Reload(reload_cli::ReloadArgs),
    /// The fleet certificate authority: create it, issue node certificates.
    ///
    /// One certificate per node serves TLS and mutual TLS between edges, shields, the purge
    /// hub and admin APIs.
    #[command(subcommand)]
    Ca(ca::CaCmd),
    /// Serve only the demo's sample origin (for benchmarks and experiments).
    SampleOrigin {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
    },
}

/// Installs stderr logging only (commands that export nothing).
fn init_logging() -> Option<agent::Telemetry> {
    agent::Telemetry::init(None, &[], &agent::LogOptions::from_env()).ok()
}

/// Installs logging and, when the config asks for it, OTLP export; `cdn.tier` names the
/// roles of this process.
fn init_telemetry(cfg: &NodeConfig) -> Result<agent::Telemetry, String> {
    let tiers: Vec<&str> = cfg
        .roles()
        .into_iter()
        .filter(|r| matches!(*r, "edge" | "shield" | "agent"))
        .collect();
    let tier = if tiers.is_empty() {
        "admin".to_string()
    } else {
        tiers.join("+")
    };
    agent::Telemetry::init(
        cfg.telemetry.as_ref(),
        &[("cdn.tier", tier)],
        &agent::LogOptions::from_env(),
    )
    .map_err(|e| e.to_string())
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        if n == 0 {
            return Err("--workers must be at least 1".into());
        }
        b.worker_threads(n);
    }
    b.enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Runs `f` on a runtime with `workers` threads; a failure is one line and exit code 2.
fn block_on(
    workers: Option<usize>,
    f: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    match runtime(workers).and_then(|rt| rt.block_on(f)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Raises the soft open-file limit to the hard one, as nginx's `worker_rlimit_nofile` and Go's
/// runtime do: every connection holds a descriptor, and so does every large body kept in
/// memory (edge-node's `cache/mapped.rs`, which uses at most a quarter of the soft limit); a
/// shell's usual soft limit of 1,024 is far below what a node serves. An unlimited or
/// unraisable limit is left as it is.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            limit.current = Some(hard);
            let _ = setrlimit(Resource::Nofile, limit);
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("outpost: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_open_file_limit();
    let logging = match &cli.cmd {
        Cmd::Run { .. } => None,
        _ => init_logging(),
    };
    let code = match cli.cmd {
        Cmd::CheckConfig { file } => match NodeConfig::load(&file) {
            Ok((_, warning)) => {
                if let Some(w) = warning {
                    eprintln!("warning: {w}");
                }
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                ExitCode::from(2)
            }
        },
        Cmd::Run { config } => {
            let (cfg, exposed) = match NodeConfig::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let telemetry = match init_telemetry(&cfg) {
                Ok(t) => t,
                Err(e) => return fail(&e),
            };
            if let Some(w) = exposed {
                tracing::warn!("{w}");
            }
            let mut agent_role = None;
            if let (Some(a), Some(t)) = (&cfg.agent, &cfg.telemetry) {
                match agent::role::Agent::start(a, &telemetry, t) {
                    Ok(role) => agent_role = Some(role),
                    Err(e) => {
                        telemetry.shutdown();
                        return fail(&e);
                    }
                }
                println!(
                    "outpost: agent shipping {} log files, host metrics {}",
                    a.logs.len(),
                    if a.host_metrics { "on" } else { "off" }
                );
            }
            let metrics = telemetry.metrics();
            let code = block_on(cli.workers, async move {
                // Before the banner: a SIGHUP sent as soon as it is read must not kill the node.
                use tokio::signal::unix::{signal, SignalKind};
                let mut hup = signal(SignalKind::hangup()).ok();
                let mut usr1 = signal(SignalKind::user_defined1()).ok();
                let running = run::start(&cfg, &metrics, Some(&config)).await?;
                for line in running.banner("edge") {
                    println!("{line}");
                }
                for line in startup::describe(&cfg) {
                    tracing::info!("{line}");
                }
                let stop = run::stop_signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = run::next(&mut hup) => {
                            run::log_reload("SIGHUP", &running.reload().await);
                        }
                        _ = run::next(&mut usr1) => running.reopen_logs().await,
                    }
                }
                running.stop().await;
                Ok(())
            });
            if let Some(role) = agent_role {
                role.stop();
            }
            // Outside the serving runtime: sends what is queued, bounded by the export timeout.
            telemetry.shutdown();
            code
        }
        Cmd::Demo => block_on(
            cli.workers,
            demo::run(
                "127.0.0.1:8000",
                "127.0.0.1:8090",
                "127.0.0.1:9900",
                &[("eu", 8081, 9901), ("us", 8082, 9902)],
                "127.0.0.1:5353",
            ),
        ),
        Cmd::Purge(purge_cli::PurgeCmd {
            sub: Some(purge_cli::PurgeSub::Log(args)),
            ..
        }) => block_on(Some(1), async move {
            for line in purge_log::run(args).await? {
                println!("{line}");
            }
            Ok(())
        }),
        Cmd::Purge(purge_cli::PurgeCmd { sub: None, purge }) => block_on(Some(1), async move {
            let v = purge_cli::run(purge).await?;
            println!("purge accepted: version {v}");
            Ok(())
        }),
        Cmd::Inspect(args) => block_on(Some(1), async move {
            for line in inspect_cli::run(args).await? {
                println!("{line}");
            }
            Ok(())
        }),
        Cmd::Reload(args) => block_on(Some(1), async move {
            for line in reload_cli::run(args).await? {
                println!("{line}");
            }
            Ok(())
        }),
        Cmd::Ca(cmd) => match ca::run(cmd) {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Cmd::SampleOrigin { listen } => block_on(cli.workers, async move {
            let l = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            if let Ok(a) = l.local_addr() {
                println!("outpost: sample origin listening on http://{a}");
            }
            tokio::select! {
                _ = demo::origin::serve(l) => {}
                _ = run::stop_signal() => {}
            }
            Ok(())
        }),
    };
    if let Some(t) = logging {
        t.shutdown();
    }
    code
}
