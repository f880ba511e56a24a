//! `node`: a Palaver chat node. Parses the command line, sets up logging on
//! stderr, and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use age::secrecy::{ExposeSecret, SecretString};
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use palaver_node::Config;
use palaver_proto::Nick;

/// Where a passphrase may come from when no file is given.
const PASSPHRASE_ENV: &str = "PALAVER_PASSPHRASE";
const NEW_PASSPHRASE_ENV: &str = "PALAVER_NEW_PASSPHRASE";

/// Palaver: peer-to-peer chat rooms. Type /join ROOM, then type to talk.
///
/// Reads one command per line on stdin and writes replies and events on
/// stdout (see README.md for the line protocol); logs go to stderr
/// (RUST_LOG=debug for more).
///
/// The keys and history in the data dir are encrypted with a passphrase:
/// from --passphrase-file, else the PALAVER_PASSPHRASE environment variable,
/// else asked for when stdin is a terminal.
#[derive(Debug, Parser)]
#[command(name = "node", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Action>,

    /// File whose content (one trailing newline ignored) is the passphrase
    /// [env PALAVER_PASSPHRASE holds the passphrase itself, when no file is given].
    #[arg(long, env = "PALAVER_PASSPHRASE_FILE", global = true)]
    passphrase_file: Option<PathBuf>,

    /// scrypt cost (log2 N, 1-22) for a key file created or re-encrypted
    /// now: 18 takes about a second and 256 MiB, which is the point; low
    /// values are for tests only.
    #[arg(long, env = "PALAVER_KDF_LOG_N", default_value_t = palaver_node::DEFAULT_LOG_N,
          value_parser = clap::value_parser!(u8).range(1..=22), global = true)]
    kdf_log_n: u8,

    /// Display name (1-32 characters); default: anon- and the end of the peer id.
    #[arg(long, env = "PALAVER_NICK")]
    nick: Option<Nick>,

    /// Directory for the node's keys and history [default: the platform's
    /// data directory, e.g. ~/.local/share/palaver].
    #[arg(long, env = "PALAVER_DATA_DIR", global = true)]
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

    /// Seconds between reconciliations of each room with a random present
    /// member (anti-entropy): nothing stays missing for longer (5 to 86400).
    #[arg(long, env = "PALAVER_ANTI_ENTROPY_SECS", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    anti_entropy_secs: u64,

    /// Most messages kept per room; the oldest go first.
    #[arg(long, env = "PALAVER_RETAIN_MESSAGES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    retain_messages: u64,

    /// Most messages kept in all rooms together (the store's quota); the
    /// oldest of the largest room go first.
    #[arg(long, env = "PALAVER_STORE_MAX_MESSAGES", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    store_max_messages: u64,

    /// Days messages are kept (0: whatever their age).
    #[arg(long, env = "PALAVER_RETAIN_DAYS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=36_500))]
    retain_days: u64,

    /// Live chat messages one author may send in one room, a second (twice
    /// as many in a burst); more are ignored.
    #[arg(long, env = "PALAVER_AUTHOR_RATE", default_value_t = palaver_node::DEFAULT_AUTHOR_RATE,
          value_parser = clap::value_parser!(u32).range(1..))]
    author_rate: u32,

    /// Most connections at once. A quarter is kept for those this node
    /// opens (its bootstrap peers, relays, room members); one address
    /// (an IPv6 /64) may open at most a sixth of the rest.
    #[arg(long, env = "PALAVER_MAX_CONNECTIONS", default_value_t = palaver_node::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(8..=65_536))]
    max_connections: u32,

    /// Joins a private room at start with this invite code (as `/join CODE`
    /// typed first): the code says how to reach a member, so no
    /// `--bootstrap` is needed.
    #[arg(long, env = "PALAVER_JOIN", value_name = "CODE")]
    join: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Change the passphrase of the data dir's keys (the node must not be
    /// running). A crash during the change leaves the old or the new one working.
    Passwd {
        /// File holding the new passphrase [env PALAVER_NEW_PASSPHRASE holds
        /// the new passphrase itself; else it is asked for twice on the terminal].
        #[arg(long, env = "PALAVER_NEW_PASSPHRASE_FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
}

/// The passphrase from a file, an environment variable, or the terminal;
/// an empty one is refused here, before anything is created.
fn read_passphrase(
    file: Option<&PathBuf>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> Result<SecretString, String> {
    let passphrase = passphrase_from_sources(file, env, prompt, confirm)?;
    if passphrase.expose_secret().is_empty() {
        return Err("the passphrase is empty".into());
    }
    Ok(passphrase)
}

/// A passphrase file others may read is no secret: say so (the node still starts).
fn warn_if_others_may_read(file: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "node: warning: passphrase file {} may be read by other users (mode {:o}); chmod 600 it",
            file.display(),
            meta.permissions().mode() & 0o7777
        );
    }
}

fn passphrase_from_sources(
    file: Option<&PathBuf>,
    env: &str,
    prompt: &str,
    confirm: bool,
) -> Result<SecretString, String> {
    if let Some(file) = file {
        warn_if_others_may_read(file);
        // Read into a secret, so that the whole file's copy is wiped too.
        let read = SecretString::from(
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read passphrase file {}: {e}", file.display()))?,
        );
        let text = read.expose_secret();
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        return Ok(SecretString::from(text.to_owned()));
    }
    if let Ok(value) = std::env::var(env) {
        return Ok(SecretString::from(value));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(format!(
            "no passphrase: pass --passphrase-file FILE or set {env} (stdin is not a terminal to ask on)"
        ));
    }
    let first = rpassword::prompt_password(prompt)
        .map_err(|e| format!("cannot read the passphrase: {e}"))?;
    if confirm {
        let again = rpassword::prompt_password("again: ")
            .map_err(|e| format!("cannot read the passphrase: {e}"))?;
        if again != first {
            return Err("the two passphrases differ".into());
        }
    }
    Ok(SecretString::from(first))
}

/// The exit status of a node that hit a bug (BSD's EX_SOFTWARE).
const EXIT_INTERNAL: i32 = 70;

/// A panic on any thread (the event loop, the store thread, the console)
/// ends the process with [`EXIT_INTERNAL`] after the usual report: a node
/// whose network or store died must not linger half alive (announcing
/// itself but unable to store or send), nor exit 0 at the end of its input
/// as if nothing happened. A supervisor restarts it; the store is crash-safe.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("node: internal error (a bug); exiting with status {EXIT_INTERNAL}");
        std::process::exit(EXIT_INTERNAL);
    }));
}

/// No core dumps (they would hold the keys), and the process made
/// non-dumpable, which also keeps its memory and `/proc/<pid>/environ` (a
/// passphrase given by environment) from other processes of the same user.
fn no_core_dumps() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        eprintln!("node: warning: cannot turn core dumps off: {e}");
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("node: warning: cannot make the process non-dumpable: {e}");
    }
}

fn main() -> ExitCode {
    exit_on_panic();
    no_core_dumps();
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
    // One thread for the swarm and its connections: a chat node's network
    // work is light, and handing tasks between worker threads cost more CPU
    // per message than it saved (BENCHMARKS.md, "What was fixed"). Storage
    // and the per-message crypto of received messages run on the store
    // thread; only signing one's own messages (about 13 µs) and transport
    // handshakes run here.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("node: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exists = palaver_node::has_keys(&data_dir);
    let prompt = if exists {
        format!("passphrase for {}: ", data_dir.display())
    } else {
        format!("new passphrase for {}: ", data_dir.display())
    };
    let passphrase = match read_passphrase(
        cli.passphrase_file.as_ref(),
        PASSPHRASE_ENV,
        &prompt,
        !exists,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("node: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Action::Passwd {
        new_passphrase_file,
    }) = cli.command
    {
        if !exists {
            eprintln!(
                "node: no key file in {}: nothing to change",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
        let new = match read_passphrase(
            new_passphrase_file.as_ref(),
            NEW_PASSPHRASE_ENV,
            "new passphrase: ",
            true,
        ) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("node: {e}");
                return ExitCode::from(2);
            }
        };
        if new.expose_secret() == passphrase.expose_secret() {
            eprintln!("node: the new passphrase is the old one");
            return ExitCode::from(2);
        }
        return match runtime.block_on(palaver_node::change_passphrase(
            &data_dir,
            passphrase,
            new,
            cli.kdf_log_n,
        )) {
            Ok(()) => {
                eprintln!("node: passphrase changed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("node: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = Config {
        data_dir,
        passphrase,
        kdf_log_n: cli.kdf_log_n,
        nick: cli.nick,
        listen: if cli.listen.is_empty() {
            Config::default_listen()
        } else {
            cli.listen
        },
        bootstrap: cli.bootstrap,
        json: cli.json,
        mdns: !cli.no_mdns,
        anti_entropy: std::time::Duration::from_secs(cli.anti_entropy_secs),
        author_rate: cli.author_rate,
        max_connections: cli.max_connections,
        join: cli.join,
        retention: palaver_node::store::Retention {
            room_messages: usize::try_from(cli.retain_messages).unwrap_or(usize::MAX),
            total_messages: usize::try_from(cli.store_max_messages).unwrap_or(usize::MAX),
            max_age_ms: (cli.retain_days > 0).then(|| cli.retain_days.saturating_mul(86_400_000)),
        },
    };
    match runtime.block_on(palaver_node::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node: {e}");
            ExitCode::FAILURE
        }
    }
}
