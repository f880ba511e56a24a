//! `node`: a Palaver chat node. Parses the command line, sets up logging on
//! stderr, and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use libp2p::Multiaddr;
use palaver_node::Config;
use palaver_proto::Nick;

/// Palaver: peer-to-peer chat rooms. Type /join ROOM, then type to talk.
///
/// Reads one command per line on stdin and writes replies and events on
/// stdout (see README.md for the line protocol); logs go to stderr
/// (RUST_LOG=debug for more).
#[derive(Debug, Parser)]
#[command(name = "node", version)]
struct Cli {
    /// Display name (1-32 characters); default: anon- and the end of the peer id.
    #[arg(long, env = "PALAVER_NICK")]
    nick: Option<Nick>,

    /// Directory for the node's identity and history [default: the platform's
    /// data directory, e.g. ~/.local/share/palaver].
    #[arg(long, env = "PALAVER_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address to listen on (repeatable; env: comma-separated)
    /// [default: /ip4/0.0.0.0/udp/0/quic-v1 and /ip4/0.0.0.0/tcp/0].
    #[arg(long = "listen", env = "PALAVER_LISTEN", value_delimiter = ',')]
    listen: Vec<Multiaddr>,

    /// Peer to connect to at start, and again whenever the connection is lost
    /// (repeatable; env: comma-separated), e.g. /ip4/1.2.3.4/udp/4001/quic-v1/p2p/12D3Koo…
    #[arg(long = "bootstrap", env = "PALAVER_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<Multiaddr>,

    /// Write one JSON object per line on stdout, for scripts and bots.
    #[arg(long, env = "PALAVER_JSON")]
    json: bool,

    /// Do not discover peers on the local network with mDNS.
    #[arg(long, env = "PALAVER_NO_MDNS")]
    no_mdns: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr through a queue: a stderr nobody reads costs log
    // lines, never a stalled event loop.
    let (stderr, _flush_logs_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let Some(data_dir) = cli
        .data_dir
        .or_else(|| dirs::data_dir().map(|d| d.join("palaver")))
    else {
        eprintln!("node: no data directory: pass --data-dir DIR");
        return ExitCode::from(2);
    };
    let config = Config {
        data_dir,
        nick: cli.nick,
        listen: if cli.listen.is_empty() {
            Config::default_listen()
        } else {
            cli.listen
        },
        bootstrap: cli.bootstrap,
        json: cli.json,
        mdns: !cli.no_mdns,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(palaver_node::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node: {e}");
            ExitCode::FAILURE
        }
    }
}
