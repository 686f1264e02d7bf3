//! Parsing of ZooKeeper's `zoo.cfg`.
//!
//! Corral reads the same configuration file a standalone ZooKeeper server
//! does, so an existing deployment can switch servers without rewriting its
//! config. The result is a [`Config`]. The file is a Java-properties-like
//! list of `key=value` lines:
//!
//! * blank lines, and lines whose first non-blank character is `#` or `!`, are
//!   comments;
//! * a line is split on its first `=`; if it has none, on its first `:` (the
//!   other separator `java.util.Properties` accepts). Splitting on `=` first
//!   keeps values such as `server.1=host:2888:3888` intact;
//! * whitespace around keys and values is trimmed; keys are case-sensitive,
//!   exactly as in ZooKeeper;
//! * a later occurrence of a key overrides an earlier one (as in `Properties`);
//! * backslash escapes are not interpreted, and a line ending in `\` (a
//!   properties continuation line) is rejected rather than silently misread.
//!
//! | key                               | field                         | default              |
//! |-----------------------------------|-------------------------------|----------------------|
//! | `clientPort`                      | `client_port`                 | 2181                 |
//! | `clientPortAddress`               | `client_port_address`         | 127.0.0.1            |
//! | `dataDir`                         | `data_dir`                    | `./corral-data`      |
//! | `dataLogDir`                      | `data_log_dir`                | none (use `dataDir`) |
//! | `tickTime`                        | `tick_time_ms`                | 3000                 |
//! | `minSessionTimeout`               | `min_session_timeout_ms`      | 2 × tickTime         |
//! | `maxSessionTimeout`               | `max_session_timeout_ms`      | 20 × tickTime        |
//! | `maxClientCnxns`                  | `max_client_cnxns`            | 60 (0 = unlimited)   |
//! | `extendedTypesEnabled`            | `extended_types_enabled`      | false                |
//! | `4lw.commands.whitelist`          | `four_letter_whitelist`       | `srvr,ruok`          |
//! | `jute.maxbuffer`                  | `max_frame_bytes`             | 0xfffff (1048575)    |
//! | `znode.container.checkIntervalMs` | `container_check_interval_ms` | 60000                |
//! | `superDigest`                     | `super_digest`                | none                 |
//! | `reconfigEnabled`                 | `reconfig_enabled`            | false                |
//! | `forceSync`                       | `force_sync`                  | yes                  |
//! | `snapCount`                       | `snap_count`                  | 100000               |
//! | `autopurge.snapRetainCount`       | `snap_retain_count`           | 3 (at least 3)       |
//! | `autopurge.purgeInterval`         | `purge_interval_hours`        | 0 (never)            |
//! | `server.N`                        | `servers`                     | none (standalone)    |
//! | `initLimit`                       | `init_limit`                  | none (0 = not set)   |
//! | `syncLimit`                       | `sync_limit`                  | none (0 = not set)   |
//! | `peerType`                        | `peer_type`                   | none (see below)     |
//! | `standaloneEnabled`               | `standalone_enabled`          | true                 |
//! | `admin.enableServer`              | `admin_enabled`               | true                 |
//! | `admin.serverAddress`             | `admin_address`               | `clientPortAddress`  |
//! | `admin.serverPort`                | `admin_port`                  | 8080                 |
//! | `metricsProvider.className`       | `metrics_enabled`             | off                  |
//! | `metricsProvider.httpHost`        | `metrics_http_host`           | 0.0.0.0              |
//! | `metricsProvider.httpPort`        | `metrics_http_port`           | 7000                 |
//! | `admin.commandURL`                | `admin_command_url`           | `/commands`          |
//! | `admin.idleTimeout`               | `admin_idle_timeout_ms`       | 30000 (≤ 0: never)   |
//! | `logLevel` (Corral's own)         | `log_level`                   | none (`info`)        |
//! | `logFormat` (Corral's own)        | `log_json`                    | `text`               |
//!
//! `logLevel` takes what `RUST_LOG` takes (`info`, `warn`, `corral_server=debug,info`);
//! the `RUST_LOG` environment variable, when set, wins over it. `logFormat` is `text` or
//! `json` (JSON lines, also `corral server --log-json`).
//!
//! Metrics are served (Prometheus text at `/metrics`) when `metricsProvider.className`
//! names ZooKeeper's `org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider`;
//! ZooKeeper's `DefaultMetricsProvider` and `NullMetricsProvider` mean none, and any
//! other provider is an error.
//!
//! `DigestAuthenticationProvider.superDigest`, the name ZooKeeper itself
//! reads, is accepted as a synonym for `superDigest`.
//!
//! The session-timeout defaults are derived from `tickTime` after the whole
//! file has been read, so `tickTime` may appear after the timeouts.
//!
//! Every other key — ZooKeeper keys Corral does not use yet (`electionAlg`,
//! `quorumListenOnAllIPs`, `admin.commandURL`, `metricsProvider.exportJvmInfo`, ...) as well as
//! keys nobody knows — is collected in [`Config::unknown_keys`] so the
//! caller can log it;
//! [`is_zookeeper_key`] tells the two kinds apart, which helps spot typos
//! such as `clientport`.
//!
//! Malformed values are hard errors naming the line, key, value and reason,
//! e.g. `line 3: clientPort = 'abc': not a port number (0-65535)`. Corral is
//! deliberately stricter than ZooKeeper here: ZooKeeper reads booleans with
//! `Boolean.parseBoolean` (anything but `true` is false) and accepts unknown
//! four letter words silently, whereas Corral rejects both.
//!
//! # Four letter word whitelist
//!
//! Checked against the ZooKeeper administrator's guide and
//! `FourLetterCommands.java` (3.5.3 onwards, unchanged through 3.8/3.9):
//! when `4lw.commands.whitelist` is absent only `srvr` is enabled; `*`
//! enables every command; otherwise exactly the listed commands are enabled,
//! **plus `srvr`, which ZooKeeper always adds** because `zkServer.sh status`
//! relies on it. Corral follows that behaviour. (ZooKeeper 3.4.10+ enabled
//! everything except `wchc`/`wchp` by default; that is not what 3.5+ does.
//! ZooKeeper additionally enables `isro` in read-only mode, which Corral does
//! not have.)
//!
//! Two deliberate differences from ZooKeeper: `clientPortAddress` defaults to
//! the loopback address (ZooKeeper binds the wildcard address) so a fresh
//! Corral is not reachable from the network by accident, and it must be an
//! IP address, not a host name.
//!
//! # Ensembles: `server.N`, `initLimit`, `syncLimit`, `peerType`, `myid`
//!
//! Read as Apache ZooKeeper 3.8 reads them (checked against ZooKeeper's
//! `QuorumPeerConfig.java`, `QuorumPeer.QuorumServer`, `flexible/QuorumMaj.java`
//! and `util/ConfigUtils.java`).
//! Corral does not run an ensemble yet: the server refuses to start with one
//! (see `Server::bind`) instead of silently running standalone.
//!
//! A server line is
//! `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]`:
//!
//! * `N` is the server id (ZooKeeper's `sid`, a Java `long`): a whole number
//!   from 1 to 2^63-1. (ZooKeeper's code also takes 0; its administrator's
//!   guide asks for 1-255, and at most 254 with `extendedTypesEnabled`, which
//!   ZooKeeper enforces at startup and so does [`Config::set_my_id`].)
//! * `host` is a host name or IPv4 address, or an IPv6 address in brackets
//!   (`[::1]`). It is kept as written (brackets removed), never resolved.
//! * both ports are required, 1-65535, and must differ (ZooKeeper: "Client and
//!   election port must be different!"). Corral also rejects a `host:port`
//!   pair that an earlier line already uses as a quorum or election port
//!   (host names compared case-insensitively; `localhost` and `127.0.0.1` are
//!   not recognised as the same host). ZooKeeper does not check this; such a
//!   server could never bind.
//! * the role is `participant` (the default) or `observer`, case-insensitive,
//!   as in ZooKeeper.
//! * the client part is `port` or `address:port` (`[v6]:port`); a bare port
//!   means ZooKeeper's wildcard address `0.0.0.0`. It is recorded but not yet
//!   reconciled with `clientPort`/`clientPortAddress` (in an ensemble
//!   ZooKeeper listens on this server's client part and rejects a
//!   `clientPort` that disagrees with it); that comes with ensemble support.
//! * several addresses per server (`a:1:2|b:1:2`, ZooKeeper's
//!   `multiAddress.enabled`, off by default there) are rejected, as ZooKeeper
//!   does by default.
//! * the same id twice (`server.1` twice, or `server.1` and `server.01`) is an
//!   error. ZooKeeper keeps the last line silently (a `Properties` map); a
//!   duplicated server line is almost certainly a mistake.
//!
//! Whether the file describes an ensemble follows ZooKeeper's
//! `QuorumPeerConfig.isDistributed()`, with `standaloneEnabled` (default true):
//!
//! * no participant lines: standalone. With observer lines only, an error
//!   ("observers without participants"); with `standaloneEnabled=false`, an
//!   error too (ZooKeeper: "number of participants should be >0").
//! * exactly one participant and `standaloneEnabled=true`: standalone, the
//!   line is ignored (ZooKeeper logs "only one server specified (ignoring)";
//!   it exists for HBase), and so is `myid`. With observer lines as well, an
//!   error ("observers without a quorum").
//! * two or more participants, or one with `standaloneEnabled=false`: an
//!   ensemble. `initLimit` and `syncLimit` (ticks, positive) are then
//!   required: ZooKeeper treats 0 as "not set" and fails with "initLimit is
//!   not set"; so does Corral, naming the number of servers.
//!
//! The server's own id comes from the file `myid` in `dataDir` ([`Config::load`]
//! or [`Config::load_my_id`]), read only for an ensemble. Its first line,
//! whitespace trimmed, must be an id (ZooKeeper reads the first line and does
//! not trim). A missing or unreadable file, or garbage in it, is an error
//! naming the file (ZooKeeper: "myid file is missing"), and so is an id that
//! has no `server.N` line (ZooKeeper, at startup: "My id N not in the peer
//! list"). [`Config::parse`] stays a pure function of the text.
//!
//! `peerType` (`participant` or `observer`, case-insensitive) should agree
//! with this server's role in its `server.N` line. When it does not,
//! ZooKeeper logs a warning and goes by the server list; Corral does the same:
//! [`Ensemble`] takes the role from the line, and [`Config::ignored_peer_type`]
//! lets the caller log the disagreement.
//!
//! ZooKeeper's `dynamicConfigFile` and hierarchical quorums (`group.N`,
//! `weight.N`) are not supported and are errors rather than ignored keys,
//! because ignoring them could make an ensemble configuration look
//! standalone or change what a quorum is.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Every four letter word ZooKeeper 3.9 knows.
pub const ALL_FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dump", "envi", "ruok", "srst", "srvr", "stat", "wchs", "wchc", "wchp",
    "dirs", "mntr", "isro", "hash", "gtmk", "stmk",
];

/// The four letter word ZooKeeper always enables (`zkServer.sh` needs it).
const ALWAYS_ENABLED_FOUR_LETTER_WORD: &str = "srvr";

const DEFAULT_CLIENT_PORT: u16 = 2181;
const DEFAULT_DATA_DIR: &str = "./corral-data";
const DEFAULT_TICK_TIME_MS: u32 = 3000;
const DEFAULT_MAX_CLIENT_CNXNS: u32 = 60;
const DEFAULT_MAX_FRAME_BYTES: usize = 0xfffff;
const DEFAULT_CONTAINER_CHECK_INTERVAL_MS: u64 = 60_000;

/// Largest timeout we accept: timeouts travel as a Java `int` on the wire.
const MAX_TIMEOUT_MS: u32 = i32::MAX as u32;

/// Which four letter word commands may be executed on the client port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FourLetterWhitelist {
    /// `4lw.commands.whitelist=*`: every command is enabled.
    All,
    /// Only these (lowercase) commands are enabled. Always contains `srvr`.
    Only(BTreeSet<&'static str>),
}

impl Default for FourLetterWhitelist {
    /// ZooKeeper 3.5+'s default is `srvr` only; Corral also answers `ruok`, the
    /// liveness probe that health checks use and that reveals nothing.
    fn default() -> Self {
        FourLetterWhitelist::Only(BTreeSet::from([ALWAYS_ENABLED_FOUR_LETTER_WORD, "ruok"]))
    }
}

impl FourLetterWhitelist {
    /// Parses a `4lw.commands.whitelist` value: comma-separated command
    /// names (case-insensitive, surrounding whitespace and empty entries
    /// ignored), or `*` anywhere in the list for all commands. `srvr` is
    /// always enabled, as in ZooKeeper. On failure returns the reason.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut all = false;
        let mut enabled = BTreeSet::from([ALWAYS_ENABLED_FOUR_LETTER_WORD]);
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                all = true;
                continue;
            }
            let word = ALL_FOUR_LETTER_WORDS
                .iter()
                .find(|w| w.eq_ignore_ascii_case(entry))
                .ok_or_else(|| {
                    format!(
                        "unknown four letter word '{entry}' (known: {}, or * for all)",
                        ALL_FOUR_LETTER_WORDS.join(", ")
                    )
                })?;
            enabled.insert(word);
        }
        Ok(if all {
            FourLetterWhitelist::All
        } else {
            FourLetterWhitelist::Only(enabled)
        })
    }

    /// Whether `cmd` (as received on the wire, lowercase) may be executed.
    /// Words that are not ZooKeeper four letter words are never allowed.
    pub fn allows(&self, cmd: &str) -> bool {
        match self {
            FourLetterWhitelist::All => ALL_FOUR_LETTER_WORDS.contains(&cmd),
            FourLetterWhitelist::Only(set) => set.contains(cmd),
        }
    }
}

impl fmt::Display for FourLetterWhitelist {
    /// Formats in `zoo.cfg` syntax, e.g. `*` or `ruok,srvr,stat`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FourLetterWhitelist::All => f.write_str("*"),
            FourLetterWhitelist::Only(set) => {
                let words: Vec<&str> = set.iter().copied().collect();
                f.write_str(&words.join(","))
            }
        }
    }
}

/// Name of the file in `dataDir` that holds this server's id in an ensemble.
pub const MY_ID_FILE: &str = "myid";

/// Largest server id: ZooKeeper keeps it in a Java `long`.
const MAX_SERVER_ID: u64 = i64::MAX as u64;

/// Largest server id when `extendedTypesEnabled=true` (ZooKeeper's
/// `EphemeralType.MAX_EXTENDED_SERVER_ID`: the id shares a byte with the
/// extended-type bits of ephemeral owners).
const MAX_EXTENDED_SERVER_ID: u64 = 254;

/// A server's part in an ensemble: the optional fourth field of `server.N`,
/// or `peerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Votes in elections and counts towards quorums (the default).
    #[default]
    Participant,
    /// Follows the leader and serves clients, but does not vote.
    Observer,
}

impl Role {
    /// `participant` or `observer`, case-insensitive, surrounding whitespace
    /// ignored (as ZooKeeper's `QuorumServer.getType`).
    pub fn parse(value: &str) -> Option<Role> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("participant") {
            Some(Role::Participant)
        } else if value.eq_ignore_ascii_case("observer") {
            Some(Role::Observer)
        } else {
            None
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Participant => "participant",
            Role::Observer => "observer",
        })
    }
}

/// Where a server takes client connections: the part after `;` in `server.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress {
    /// The address as written (IPv6 without brackets), not resolved. `None`
    /// when only a port was given, which ZooKeeper reads as `0.0.0.0`.
    pub host: Option<String>,
    /// The client port (0-65535).
    pub port: u16,
}

/// One `server.N` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `N`: the server id, 1 to 2^63-1.
    pub id: u64,
    /// Host name or IP address as written (IPv6 without its brackets), not
    /// resolved.
    pub host: String,
    /// Port followers connect to the leader on (the first port).
    pub quorum_port: u16,
    /// Port for leader election (the second port).
    pub election_port: u16,
    /// Participant (the default) or observer.
    pub role: Role,
    /// The optional client address after `;`.
    pub client: Option<ClientAddress>,
}

impl ServerSpec {
    /// Parses the value of a `server.N` line for server `id`:
    /// `host:quorumPort:electionPort[:role][;[clientAddress:]clientPort]`.
    /// On failure returns the reason.
    pub fn parse(id: u64, value: &str) -> Result<ServerSpec, String> {
        const FORM: &str =
            "expected host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]";
        if value.contains('|') {
            return Err("several addresses for one server (multiAddress) are not supported".into());
        }
        let (server_part, client_part) = match value.split_once(';') {
            Some((_, client)) if client.contains(';') => {
                return Err(format!("more than one ';': {FORM}"));
            }
            Some((server, client)) => (server, Some(client)),
            None => (value, None),
        };
        let (host, fields) = split_host(server_part)?;
        let (quorum, election, role) = match fields.as_slice() {
            [] => return Err(format!("missing quorum and election ports: {FORM}")),
            [_] => return Err(format!("missing election port: {FORM}")),
            [q, e] => (*q, *e, None),
            [q, e, r] => (*q, *e, Some(*r)),
            _ => {
                return Err(format!(
                    "too many ':'-separated fields (an IPv6 address must be in brackets, \
                     e.g. [::1]): {FORM}"
                ));
            }
        };
        let port = |what: &str, text: &str| match text.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!(
                "{what} port '{text}' is not a port number (1-65535)"
            )),
        };
        check_host(host)?;
        let quorum_port = port("quorum", quorum)?;
        let election_port = port("election", election)?;
        if quorum_port == election_port {
            return Err(format!(
                "quorum port and election port must be different (both are {quorum_port})"
            ));
        }
        let role = match role {
            None => Role::Participant,
            Some(r) => Role::parse(r)
                .ok_or_else(|| format!("unknown role '{r}' (participant or observer)"))?,
        };
        let client = match client_part {
            None => None,
            Some(c) => Some(parse_client_address(c)?),
        };
        Ok(ServerSpec {
            id,
            host: host.to_owned(),
            quorum_port,
            election_port,
            role,
            client,
        })
    }
}

/// Splits `host:field:...` where host may be a bracketed IPv6 address (as
/// ZooKeeper's `ConfigUtils.getHostAndPort`). The host is not checked (see
/// [`check_host`]), so that a missing bracket can be reported as such.
fn split_host(text: &str) -> Result<(&str, Vec<&str>), String> {
    let (host, rest) = if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("'{text}' starts with '[' but has no matching ']'"))?;
        // A zone (`fe80::1%eth0`) is allowed after the address.
        let address = inside.split_once('%').map_or(inside, |(a, _)| a);
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'[{inside}]' is not an IPv6 address in brackets"));
        }
        if after.is_empty() {
            return Ok((inside, Vec::new()));
        }
        let rest = after
            .strip_prefix(':')
            .ok_or_else(|| format!("expected ':' after ']' in '{text}'"))?;
        (inside, Some(rest))
    } else {
        match text.split_once(':') {
            Some((host, rest)) => (host, Some(rest)),
            None => (text, None),
        }
    };
    Ok((host, rest.map_or_else(Vec::new, |r| r.split(':').collect())))
}

/// A host is not resolved, only checked to be non-empty and free of
/// whitespace.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("host '{host}' contains whitespace"));
    }
    Ok(())
}

/// The client part of a server line: `port` or `address:port`.
fn parse_client_address(text: &str) -> Result<ClientAddress, String> {
    const FORM: &str = "the client address after ';' must be port or address:port";
    if text.is_empty() {
        return Err(format!("nothing after ';': {FORM}"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("client port '{p}' is not a port number (0-65535)"))
    };
    if !text.contains(':') {
        return Ok(ClientAddress {
            host: None,
            port: port(text)?,
        });
    }
    match split_host(text)? {
        (host, fields) if fields.len() == 1 => {
            check_host(host)?;
            Ok(ClientAddress {
                host: Some(host.to_owned()),
                port: port(fields[0])?,
            })
        }
        _ => Err(format!("'{text}': {FORM}")),
    }
}

/// The ensemble this server is part of: the `server.N` lines, the limits,
/// and this server's own id from `myid`. Only built when the file describes
/// an ensemble (see [`Config::describes_ensemble`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensemble {
    /// This server's id (from `myid`); always one of `servers`.
    pub my_id: u64,
    /// Every server, participants and observers, sorted by id.
    pub servers: Vec<ServerSpec>,
    /// `initLimit`: ticks a follower may take to connect and sync to a leader.
    pub init_limit: u32,
    /// `syncLimit`: ticks a follower may lag behind the leader.
    pub sync_limit: u32,
}

impl Ensemble {
    /// The server with this id.
    pub fn server(&self, id: u64) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.id == id)
    }

    /// This server's own line.
    pub fn me(&self) -> &ServerSpec {
        self.server(self.my_id)
            .expect("an Ensemble's my_id is one of its servers")
    }

    /// The participants: the servers that vote, in id order.
    pub fn voters(&self) -> impl Iterator<Item = &ServerSpec> {
        self.servers.iter().filter(|s| s.role == Role::Participant)
    }

    /// Whether `id` is an observer (false for ids not in the ensemble).
    pub fn is_observer(&self, id: u64) -> bool {
        self.server(id).is_some_and(|s| s.role == Role::Observer)
    }

    /// Votes needed for a quorum: a majority of the participants,
    /// floor(n/2)+1 (ZooKeeper's `QuorumMaj`); observers do not count.
    pub fn quorum_size(&self) -> usize {
        self.voters().count() / 2 + 1
    }
}

/// Errors from reading or parsing a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line that is not a comment, blank, or `key=value`.
    #[error("line {line}: {reason}: '{text}'")]
    Syntax {
        line: usize,
        text: String,
        reason: String,
    },
    /// A recognised key with a value that does not make sense for it.
    #[error("line {line}: {key} = '{value}': {reason}")]
    Invalid {
        line: usize,
        key: String,
        value: String,
        reason: String,
    },
    /// The effective minimum session timeout (explicit or derived from
    /// `tickTime`) exceeds the effective maximum.
    #[error(
        "minSessionTimeout ({min_ms} ms) must not be larger than maxSessionTimeout ({max_ms} ms)"
    )]
    SessionTimeoutRange { min_ms: u32, max_ms: u32 },
    /// The `server.N` lines and related keys, each valid on its own, do not
    /// make a valid configuration together (e.g. an ensemble without
    /// `initLimit`).
    #[error("{0}")]
    Ensemble(String),
    /// The `myid` file of an ensemble member is missing, unreadable, does
    /// not hold a server id, or holds an id that has no `server.N` line.
    #[error("myid file {}: {reason}", path.display())]
    MyId { path: PathBuf, reason: String },
}

/// Server configuration, as read from `zoo.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// TCP port for client connections (`clientPort`). Defaults to
    /// ZooKeeper's well-known 2181 so existing clients connect unchanged;
    /// 0 asks the OS for a free port (handy in tests).
    pub client_port: u16,
    /// Address the client listener binds (`clientPortAddress`). Defaults to
    /// 127.0.0.1 — unlike ZooKeeper's wildcard — so that an unconfigured
    /// server is not exposed to the network.
    pub client_port_address: IpAddr,
    /// Directory for snapshots, and for the transaction log unless
    /// `data_log_dir` is set (`dataDir`). A relative path is kept as given,
    /// i.e. relative to the server's working directory.
    pub data_dir: PathBuf,
    /// Separate directory for the transaction log (`dataLogDir`); putting it
    /// on its own device avoids fsync contention with snapshots.
    pub data_log_dir: Option<PathBuf>,
    /// ZooKeeper's basic time unit in milliseconds (`tickTime`); the session
    /// timeout defaults are multiples of it. Must be positive.
    pub tick_time_ms: u32,
    /// Smallest session timeout granted to a client (`minSessionTimeout`,
    /// `-1` = default). Defaults to 2 × tickTime, as in ZooKeeper.
    pub min_session_timeout_ms: u32,
    /// Largest session timeout granted to a client (`maxSessionTimeout`,
    /// `-1` = default). Defaults to 20 × tickTime, as in ZooKeeper.
    pub max_session_timeout_ms: u32,
    /// Maximum concurrent connections from one client IP (`maxClientCnxns`),
    /// a guard against a misbehaving client exhausting the server.
    /// Default 60; 0 means unlimited.
    pub max_client_cnxns: u32,
    /// Enables TTL nodes (`extendedTypesEnabled`). Off by default, as in
    /// ZooKeeper, because it claims the high bits of ephemeral owner ids.
    pub extended_types_enabled: bool,
    /// Four letter word commands answered on the client port
    /// (`4lw.commands.whitelist`). Defaults to `srvr` and `ruok` (ZooKeeper 3.5+ has `srvr` only),
    /// 3.5+, because some commands (`wchp`, `wchc`, `dump`) are expensive
    /// and unauthenticated.
    pub four_letter_whitelist: FourLetterWhitelist,
    /// Largest request/response frame in bytes (`jute.maxbuffer`, decimal
    /// or `0x` hex). Default 0xfffff, the same as ZooKeeper clients assume;
    /// bounds the memory one connection can make us allocate.
    pub max_frame_bytes: usize,
    /// How often container nodes (and TTL nodes) are checked for deletion
    /// (`znode.container.checkIntervalMs`). Default 60000 as in ZooKeeper.
    pub container_check_interval_ms: u64,
    /// `user:base64(sha1(user:password))` of a superuser that bypasses ACLs
    /// (`superDigest` or ZooKeeper's `DigestAuthenticationProvider.superDigest`).
    /// None by default: no superuser.
    pub super_digest: Option<String>,
    /// Whether the `reconfig` operation is allowed (`reconfigEnabled`).
    /// Off by default, as in ZooKeeper 3.5.3+, since it changes membership.
    pub reconfig_enabled: bool,
    /// `forceSync`: fsync the transaction log before acknowledging writes (default yes).
    /// `no` is for benchmarks only: an acknowledged write can then be lost in a power
    /// failure, and the server says so loudly at startup.
    pub force_sync: bool,
    /// `snapCount`: a snapshot is taken after about this many transactions (each server
    /// picks a random point between half and all of it, so ensemble members do not
    /// snapshot together). Default 100000.
    pub snap_count: u32,
    /// `autopurge.snapRetainCount`: snapshots kept by the purge (at least 3). Default 3.
    pub snap_retain_count: u32,
    /// `autopurge.purgeInterval`: hours between purges of old snapshots and the log
    /// segments they cover; 0 (the default, as in ZooKeeper) never purges.
    pub purge_interval_hours: u32,
    /// `admin.enableServer`: serve the AdminServer over HTTP. Default true, as ZooKeeper.
    pub admin_enabled: bool,
    /// `admin.serverAddress`; `None`: the client port's address (`clientPortAddress`,
    /// 127.0.0.1 by default). ZooKeeper listens on 0.0.0.0 by default, as it does for
    /// clients; Corral keeps its operators' HTTP port as private as its client port.
    pub admin_address: Option<IpAddr>,
    /// `admin.serverPort`. Default 8080, as ZooKeeper.
    pub admin_port: u16,
    /// `metricsProvider.className` is ZooKeeper's Prometheus provider: serve `/metrics`.
    pub metrics_enabled: bool,
    /// `metricsProvider.httpHost`: where `/metrics` listens. Default 0.0.0.0, as ZooKeeper.
    pub metrics_http_host: IpAddr,
    /// `metricsProvider.httpPort`. Default 7000, as ZooKeeper.
    pub metrics_http_port: u16,
    /// `admin.commandURL`: where the AdminServer's commands live. Default `/commands`, as
    /// ZooKeeper; no trailing slash.
    pub admin_command_url: String,
    /// `admin.idleTimeout`: close an AdminServer connection that has neither sent nor
    /// received a byte for this many milliseconds (while none of its requests is being
    /// answered). Default 30000, as ZooKeeper; 0 or less never (Jetty's meaning of a
    /// timeout that is not positive).
    pub admin_idle_timeout_ms: i64,
    /// `logLevel`: a tracing filter (what `RUST_LOG` takes); `None` means `info`. Checked
    /// by the caller that installs the logger.
    pub log_level: Option<String>,
    /// `logFormat=json`: log JSON lines instead of text.
    pub log_json: bool,
    /// Every `server.N` line, participants and observers, sorted by id.
    /// Empty for a standalone configuration; may hold one participant that
    /// ZooKeeper (and Corral) ignore (see [`Config::describes_ensemble`]).
    pub servers: Vec<ServerSpec>,
    /// `initLimit` in ticks; `None` when absent or 0 ("not set" in ZooKeeper).
    /// Required for an ensemble.
    pub init_limit: Option<u32>,
    /// `syncLimit` in ticks; `None` when absent or 0. Required for an ensemble.
    pub sync_limit: Option<u32>,
    /// `peerType`, if given. The role in this server's `server.N` line wins
    /// when they disagree (see [`Config::ignored_peer_type`]).
    pub peer_type: Option<Role>,
    /// `standaloneEnabled` (default true): whether a configuration with a
    /// single participant runs standalone.
    pub standalone_enabled: bool,
    /// The ensemble, once this server's id has been read from `myid`
    /// ([`Config::load`], [`Config::load_my_id`] or [`Config::set_my_id`]).
    /// Always `None` after [`Config::parse`] alone, and for a standalone
    /// configuration.
    pub ensemble: Option<Ensemble>,
    /// Keys present in the file that Corral ignored, in order of first
    /// appearance and without duplicates: ZooKeeper keys Corral does not
    /// use yet as well as unknown ones (see [`is_zookeeper_key`]). The
    /// caller should log them.
    pub unknown_keys: Vec<String>,
    /// The file's text as read at startup ([`Config::parse_file`]), for the AdminServer's
    /// `initial_configuration`; `None` for a configuration that came from no file.
    pub file_text: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_port: DEFAULT_CLIENT_PORT,
            client_port_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            data_log_dir: None,
            tick_time_ms: DEFAULT_TICK_TIME_MS,
            min_session_timeout_ms: default_min_session_timeout(DEFAULT_TICK_TIME_MS),
            max_session_timeout_ms: default_max_session_timeout(DEFAULT_TICK_TIME_MS),
            max_client_cnxns: DEFAULT_MAX_CLIENT_CNXNS,
            extended_types_enabled: false,
            four_letter_whitelist: FourLetterWhitelist::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            container_check_interval_ms: DEFAULT_CONTAINER_CHECK_INTERVAL_MS,
            super_digest: None,
            reconfig_enabled: false,
            force_sync: true,
            snap_count: 100_000,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            admin_enabled: true,
            admin_address: None,
            admin_port: 8080,
            metrics_enabled: false,
            metrics_http_host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            metrics_http_port: 7000,
            admin_command_url: "/commands".to_string(),
            admin_idle_timeout_ms: 30_000,
            log_level: None,
            log_json: false,
            servers: Vec::new(),
            init_limit: None,
            sync_limit: None,
            peer_type: None,
            standalone_enabled: true,
            ensemble: None,
            unknown_keys: Vec::new(),
            file_text: None,
        }
    }
}

fn default_min_session_timeout(tick_time_ms: u32) -> u32 {
    tick_time_ms.saturating_mul(2).min(MAX_TIMEOUT_MS)
}

fn default_max_session_timeout(tick_time_ms: u32) -> u32 {
    tick_time_ms.saturating_mul(20).min(MAX_TIMEOUT_MS)
}

impl Config {
    /// `admin.idleTimeout` as a duration; `None` when it is not positive (never).
    pub fn admin_idle_timeout(&self) -> Option<std::time::Duration> {
        u64::try_from(self.admin_idle_timeout_ms).ok().filter(|&ms| ms > 0).map(std::time::Duration::from_millis)
    }

    /// Parses the text of a `zoo.cfg`. Pure: no file system access, and
    /// paths are not resolved.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut cfg = Config::default();
        // `None` = not given (or -1): derive from tickTime once it is known.
        let mut min_session_timeout = None;
        let mut max_session_timeout = None;
        // Server lines with the line number each came from, in file order.
        let mut servers: Vec<(usize, ServerSpec)> = Vec::new();

        for (index, raw) in text.lines().enumerate() {
            let Some(entry) = Entry::split(index + 1, raw)? else {
                continue;
            };
            match entry.key {
                "clientPort" => cfg.client_port = entry.port()?,
                "clientPortAddress" => cfg.client_port_address = entry.ip_addr()?,
                "dataDir" => cfg.data_dir = entry.path()?,
                "dataLogDir" => cfg.data_log_dir = Some(entry.path()?),
                "tickTime" => cfg.tick_time_ms = entry.tick_time()?,
                "minSessionTimeout" => min_session_timeout = entry.session_timeout()?,
                "maxSessionTimeout" => max_session_timeout = entry.session_timeout()?,
                "maxClientCnxns" => cfg.max_client_cnxns = entry.count()?,
                "extendedTypesEnabled" => cfg.extended_types_enabled = entry.boolean()?,
                "4lw.commands.whitelist" => {
                    cfg.four_letter_whitelist =
                        FourLetterWhitelist::parse(entry.value).map_err(|r| entry.invalid(r))?;
                }
                "jute.maxbuffer" => cfg.max_frame_bytes = entry.frame_bytes()?,
                "znode.container.checkIntervalMs" => {
                    cfg.container_check_interval_ms = entry.interval_ms()?;
                }
                "superDigest" | "DigestAuthenticationProvider.superDigest" => {
                    cfg.super_digest = Some(entry.super_digest()?);
                }
                "reconfigEnabled" => cfg.reconfig_enabled = entry.boolean()?,
                "forceSync" => cfg.force_sync = entry.boolean()?,
                "snapCount" => {
                    cfg.snap_count = entry.count()?;
                    if cfg.snap_count < 2 {
                        return Err(entry.invalid("must be at least 2"));
                    }
                }
                // ZooKeeper raises a retain count below 3 to 3; so do we.
                "autopurge.snapRetainCount" => cfg.snap_retain_count = entry.count()?.max(3),
                "autopurge.purgeInterval" => cfg.purge_interval_hours = entry.count()?,
                "metricsProvider.className" => {
                    // ZooKeeper's default provider and its null one export nothing.
                    cfg.metrics_enabled = match entry.value.rsplit('.').next().unwrap_or_default() {
                        "PrometheusMetricsProvider" => true,
                        "DefaultMetricsProvider" | "NullMetricsProvider" => false,
                        _ => {
                            return Err(entry.invalid(
                                "the only metrics provider is ZooKeeper's \
                                 org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
                            ))
                        }
                    };
                }
                "metricsProvider.httpHost" => cfg.metrics_http_host = entry.ip_addr()?,
                "admin.enableServer" => cfg.admin_enabled = entry.boolean()?,
                "admin.serverAddress" => cfg.admin_address = Some(entry.ip_addr()?),
                "admin.serverPort" => cfg.admin_port = entry.port()?,
                "metricsProvider.httpPort" => cfg.metrics_http_port = entry.port()?,
                "admin.commandURL" => cfg.admin_command_url = entry.url_path()?,
                "admin.idleTimeout" => {
                    cfg.admin_idle_timeout_ms =
                        entry.value.parse().map_err(|_| entry.invalid("not a whole number of milliseconds"))?;
                }
                "logLevel" => {
                    if entry.value.is_empty() {
                        return Err(entry.invalid("empty (say info, warn, error, debug or trace)"));
                    }
                    cfg.log_level = Some(entry.value.to_string());
                }
                "logFormat" => {
                    cfg.log_json = match entry.value.to_ascii_lowercase().as_str() {
                        "text" => false,
                        "json" => true,
                        _ => return Err(entry.invalid("not a log format (text or json)")),
                    }
                }
                "initLimit" => cfg.init_limit = entry.limit()?,
                "syncLimit" => cfg.sync_limit = entry.limit()?,
                "peerType" => {
                    cfg.peer_type = Some(Role::parse(entry.value).ok_or_else(|| {
                        entry.invalid("not a peer type (participant or observer)")
                    })?);
                }
                "standaloneEnabled" => cfg.standalone_enabled = entry.boolean()?,
                "dynamicConfigFile" => {
                    return Err(entry.invalid(
                        "dynamic configuration files are not supported; \
                         put the server.N lines in this file",
                    ));
                }
                key if key.starts_with("server.") => {
                    let server = entry.server(&servers)?;
                    servers.push((entry.line, server));
                }
                key if key.starts_with("group.") || key.starts_with("weight.") => {
                    return Err(
                        entry.invalid("hierarchical quorums (group.N, weight.N) are not supported")
                    );
                }
                other => {
                    if !cfg.unknown_keys.iter().any(|k| k == other) {
                        cfg.unknown_keys.push(other.to_owned());
                    }
                }
            }
        }

        cfg.min_session_timeout_ms =
            min_session_timeout.unwrap_or_else(|| default_min_session_timeout(cfg.tick_time_ms));
        cfg.max_session_timeout_ms =
            max_session_timeout.unwrap_or_else(|| default_max_session_timeout(cfg.tick_time_ms));
        if cfg.min_session_timeout_ms > cfg.max_session_timeout_ms {
            return Err(ConfigError::SessionTimeoutRange {
                min_ms: cfg.min_session_timeout_ms,
                max_ms: cfg.max_session_timeout_ms,
            });
        }
        cfg.servers = servers.into_iter().map(|(_, s)| s).collect();
        cfg.servers.sort_by_key(|s| s.id);
        cfg.check_ensemble()?;
        Ok(cfg)
    }

    /// The checks ZooKeeper's `parseDynamicConfig` and `checkValidity` make
    /// that need the whole file but not `myid`.
    fn check_ensemble(&self) -> Result<(), ConfigError> {
        let participants = self.participant_count();
        let observers = self.servers.len() - participants;
        if participants == 0 {
            if !self.standalone_enabled {
                return Err(ConfigError::Ensemble(
                    "standaloneEnabled=false needs at least one participant server.N line".into(),
                ));
            }
            if observers > 0 {
                return Err(ConfigError::Ensemble(format!(
                    "{observers} observer server.N line(s) but no participant: observers \
                     without participants is an invalid configuration"
                )));
            }
        } else if participants == 1 && self.standalone_enabled && observers > 0 {
            return Err(ConfigError::Ensemble(format!(
                "one participant and {observers} observer server.N line(s): observers without \
                 a quorum is an invalid configuration (a single participant runs standalone \
                 while standaloneEnabled=true)"
            )));
        }
        if self.describes_ensemble() {
            let n = self.servers.len();
            for (key, value) in [
                ("initLimit", self.init_limit),
                ("syncLimit", self.sync_limit),
            ] {
                if value.is_none() {
                    return Err(ConfigError::Ensemble(format!(
                        "{key} is not set; it is required for an ensemble ({n} servers in zoo.cfg)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn participant_count(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.role == Role::Participant)
            .count()
    }

    /// Whether the `server.N` lines describe an ensemble rather than a
    /// standalone server: two or more participants, or one participant with
    /// `standaloneEnabled=false` (ZooKeeper's `isDistributed()`). Observers
    /// alone never make an ensemble (that is an error).
    pub fn describes_ensemble(&self) -> bool {
        let participants = self.participant_count();
        participants > 1 || (participants == 1 && !self.standalone_enabled)
    }

    /// `<dataDir>/myid`.
    pub fn my_id_path(&self) -> PathBuf {
        self.data_dir.join(MY_ID_FILE)
    }

    /// For an ensemble, reads this server's id from `<dataDir>/myid` and
    /// builds [`Config::ensemble`] (see [`Config::set_my_id`]); for a
    /// standalone configuration does nothing and reads no file, as
    /// ZooKeeper does not need `myid` there. Call it after changing
    /// `data_dir`.
    pub fn load_my_id(&mut self) -> Result<(), ConfigError> {
        if !self.describes_ensemble() {
            self.ensemble = None;
            return Ok(());
        }
        let path = self.my_id_path();
        let n = self.servers.len();
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::MyId {
            path: path.clone(),
            reason: format!(
                "cannot read it: {e}; an ensemble ({n} servers in zoo.cfg) needs this \
                 server's id in it"
            ),
        })?;
        let my_id = parse_my_id(&text).map_err(|reason| ConfigError::MyId {
            path: path.clone(),
            reason,
        })?;
        self.set_my_id(my_id)
    }

    /// Builds [`Config::ensemble`] for the server with id `my_id` (as read
    /// from `myid`): the id must have a `server.N` line and, with
    /// `extendedTypesEnabled`, be at most 254 (as in ZooKeeper). Pure. For a
    /// standalone configuration, sets `ensemble` to `None` and ignores the id.
    /// Errors name `<dataDir>/myid`, where the id comes from.
    pub fn set_my_id(&mut self, my_id: u64) -> Result<(), ConfigError> {
        if !self.describes_ensemble() {
            self.ensemble = None;
            return Ok(());
        }
        let error = |reason: String| ConfigError::MyId {
            path: self.my_id_path(),
            reason,
        };
        if !self.servers.iter().any(|s| s.id == my_id) {
            let ids: Vec<String> = self.servers.iter().map(|s| s.id.to_string()).collect();
            return Err(error(format!(
                "id {my_id} has no server.{my_id} line in zoo.cfg (ids there: {})",
                ids.join(", ")
            )));
        }
        if self.extended_types_enabled && my_id > MAX_EXTENDED_SERVER_ID {
            return Err(error(format!(
                "id {my_id} is larger than {MAX_EXTENDED_SERVER_ID}, the largest id allowed \
                 with extendedTypesEnabled=true"
            )));
        }
        let (Some(init_limit), Some(sync_limit)) = (self.init_limit, self.sync_limit) else {
            // `parse` already refused an ensemble without them; only a
            // hand-built Config gets here.
            return Err(ConfigError::Ensemble(
                "initLimit and syncLimit are required for an ensemble".into(),
            ));
        };
        self.ensemble = Some(Ensemble {
            my_id,
            servers: self.servers.clone(),
            init_limit,
            sync_limit,
        });
        Ok(())
    }

    /// `peerType` when it disagrees with this server's role in its
    /// `server.N` line, and so was ignored (ZooKeeper logs a warning and goes
    /// by the server list). `None` when it agrees, is absent, or there is no
    /// ensemble.
    pub fn ignored_peer_type(&self) -> Option<Role> {
        let ensemble = self.ensemble.as_ref()?;
        self.peer_type.filter(|&p| p != ensemble.me().role)
    }

    /// Reads and parses the file at `path`, then, for an ensemble, reads
    /// `<dataDir>/myid` ([`Config::load_my_id`]). Relative paths inside it
    /// (such as `dataDir`) are kept as given, not resolved against the
    /// file's directory — ZooKeeper does the same. Parse errors carry the
    /// line number but not the path; the caller knows it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::parse_file(path)?;
        cfg.load_my_id()?;
        Ok(cfg)
    }

    /// Reads and parses the file at `path` without reading `myid`, for a
    /// caller that may still change `data_dir` before
    /// [`Config::load_my_id`].
    pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text)?;
        cfg.file_text = Some(text);
        Ok(cfg)
    }

    /// The session timeout granted to a client that asked for
    /// `requested_ms`: raised to the minimum, then lowered to the maximum,
    /// exactly as ZooKeeper does (so even a hand-built `Config` with
    /// min > max cannot panic; the maximum wins).
    pub fn negotiate_timeout(&self, requested_ms: i32) -> i32 {
        let min = i32::try_from(self.min_session_timeout_ms).unwrap_or(i32::MAX);
        let max = i32::try_from(self.max_session_timeout_ms).unwrap_or(i32::MAX);
        requested_ms.max(min).min(max)
    }
}

/// Parses the text of a `myid` file: its first line, whitespace trimmed,
/// must be a server id (1 to 2^63-1). On failure returns the reason.
pub fn parse_my_id(text: &str) -> Result<u64, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err("empty; it must hold this server's id, e.g. 1".into());
    }
    parse_server_id(first).ok_or_else(|| {
        format!("'{first}' is not a server id (a whole number from 1 to {MAX_SERVER_ID})")
    })
}

/// A server id: 1 to 2^63-1.
fn parse_server_id(text: &str) -> Option<u64> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|id| (1..=MAX_SERVER_ID).contains(id))
}

/// Whether `key` is a configuration key ZooKeeper itself understands (in
/// `zoo.cfg`, or as a system property that ZooKeeper lets `zoo.cfg` set).
/// Lets the caller word its log line for [`Config::unknown_keys`]: "not used
/// by Corral" for these, "unknown key (typo?)" for the rest.
pub fn is_zookeeper_key(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "4lw.commands.whitelist",
        "DigestAuthenticationProvider.superDigest",
        "audit.enable",
        "authProvider",
        "clientCnxnSocket",
        "clientPort",
        "clientPortAddress",
        "clientPortListenBacklog",
        "cnxTimeout",
        "connectToLearnerMasterLimit",
        "dataDir",
        "dataLogDir",
        "digest.enabled",
        "dynamicConfigFile",
        "electionAlg",
        "electionPortBindRetry",
        "extendedTypesEnabled",
        "emulate353TTLNodes",
        "forceSync",
        "fsync.warningthresholdms",
        "globalOutstandingLimit",
        "initLimit",
        "ipReachableTimeout",
        "jute.maxbuffer",
        "leaderServes",
        "localSessionsEnabled",
        "localSessionsUpgradingEnabled",
        "maxClientCnxns",
        "maxCnxns",
        "maxSessionTimeout",
        "minSessionTimeout",
        "observerMasterPort",
        "peerType",
        "portUnification",
        "preAllocSize",
        "quorumListenOnAllIPs",
        "reconfigEnabled",
        "secureClientPort",
        "secureClientPortAddress",
        "serverCnxnFactory",
        "sessionRequireClientSASLAuth",
        "skipACL",
        "snapCount",
        "snapSizeLimitInKb",
        "sslQuorum",
        "sslQuorumReloadCertFiles",
        "standaloneEnabled",
        "superDigest",
        "syncEnabled",
        "syncLimit",
        "tcpKeepAlive",
        "tickTime",
        "txnLogSizeLimitInKb",
        "watchManagerName",
    ];
    const PREFIXES: &[&str] = &[
        "4lw.",
        "admin.",
        "authProvider.",
        "autopurge.",
        "client.",
        "enforce.auth.",
        "group.",
        "jvm.pause.",
        "metricsProvider.",
        "multiAddress.",
        "quorum.",
        "server.",
        "snapshot.",
        "ssl.",
        "weight.",
        "zookeeper.",
        "znode.container.",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// One `key=value` line, with enough context to report errors.
struct Entry<'a> {
    line: usize,
    key: &'a str,
    value: &'a str,
}

impl<'a> Entry<'a> {
    /// Splits a raw line; `Ok(None)` for blank and comment lines.
    fn split(line: usize, raw: &'a str) -> Result<Option<Self>, ConfigError> {
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with('!') {
            return Ok(None);
        }
        let syntax = |reason: &str| ConfigError::Syntax {
            line,
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trailing_backslashes = text.len() - text.trim_end_matches('\\').len();
        if trailing_backslashes % 2 == 1 {
            return Err(syntax(
                "continuation lines (ending in '\\') are not supported",
            ));
        }
        let (key, value) = text
            .split_once('=')
            .or_else(|| text.split_once(':'))
            .ok_or_else(|| syntax("expected 'key=value'"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(syntax("missing key before '='"));
        }
        Ok(Some(Entry {
            line,
            key,
            value: value.trim(),
        }))
    }

    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            line: self.line,
            key: self.key.to_owned(),
            value: self.value.to_owned(),
            reason: reason.into(),
        }
    }

    fn port(&self) -> Result<u16, ConfigError> {
        self.value
            .parse()
            .map_err(|_| self.invalid("not a port number (0-65535)"))
    }

    fn ip_addr(&self) -> Result<IpAddr, ConfigError> {
        let unbracketed = self
            .value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(self.value);
        unbracketed
            .parse()
            .map_err(|_| self.invalid("not an IPv4 or IPv6 address (host names are not supported)"))
    }

    fn path(&self) -> Result<PathBuf, ConfigError> {
        if self.value.is_empty() {
            return Err(self.invalid("must not be empty"));
        }
        Ok(PathBuf::from(self.value))
    }

    fn tick_time(&self) -> Result<u32, ConfigError> {
        const REASON: &str = "not a positive number of milliseconds (1-2147483647)";
        match self.value.parse::<u32>() {
            Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(ms),
            _ => Err(self.invalid(REASON)),
        }
    }

    /// A session timeout; `None` for ZooKeeper's "-1 = use the default".
    fn session_timeout(&self) -> Result<Option<u32>, ConfigError> {
        const REASON: &str = "not a number of milliseconds (0-2147483647, or -1 for the default)";
        if self.value == "-1" {
            return Ok(None);
        }
        match self.value.parse::<u32>() {
            Ok(ms) if ms <= MAX_TIMEOUT_MS => Ok(Some(ms)),
            _ => Err(self.invalid(REASON)),
        }
    }

    /// `initLimit`/`syncLimit`: ticks, 0 to 2^31-1; 0 means "not set", as
    /// in ZooKeeper.
    fn limit(&self) -> Result<Option<u32>, ConfigError> {
        match self.value.parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) if n <= MAX_TIMEOUT_MS => Ok(Some(n)),
            _ => Err(self.invalid("not a positive number of ticks (1-2147483647)")),
        }
    }

    /// A `server.N` line, checked against the lines before it (`earlier`):
    /// no id twice, no quorum or election `host:port` twice.
    fn server(&self, earlier: &[(usize, ServerSpec)]) -> Result<ServerSpec, ConfigError> {
        let suffix = &self.key["server.".len()..];
        let id = parse_server_id(suffix).ok_or_else(|| {
            self.invalid(format!(
                "'{suffix}' after 'server.' is not a server id (a whole number from 1 to \
                 {MAX_SERVER_ID})"
            ))
        })?;
        let server = ServerSpec::parse(id, self.value).map_err(|r| self.invalid(r))?;
        for (line, other) in earlier {
            if other.id == id {
                return Err(
                    self.invalid(format!("server id {id} is already defined on line {line}"))
                );
            }
            if !other.host.eq_ignore_ascii_case(&server.host) {
                continue;
            }
            for port in [server.quorum_port, server.election_port] {
                if port == other.quorum_port || port == other.election_port {
                    return Err(self.invalid(format!(
                        "port {port} on host {} is already used by server.{} (line {line})",
                        server.host, other.id
                    )));
                }
            }
        }
        Ok(server)
    }

    fn count(&self) -> Result<u32, ConfigError> {
        self.value
            .parse()
            .map_err(|_| self.invalid("not a non-negative whole number (0-4294967295)"))
    }

    /// An absolute URL path other than `/` (a trailing slash is dropped).
    fn url_path(&self) -> Result<String, ConfigError> {
        let p = self.value.trim_end_matches('/');
        if !self.value.starts_with('/') || p.is_empty() || p.contains(['?', '#', '{', '}', ' ']) {
            return Err(self.invalid("not a URL path like /commands"));
        }
        Ok(p.to_string())
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok(true),
            "false" | "no" => Ok(false),
            _ => Err(self.invalid("not a boolean (true/false/yes/no)")),
        }
    }

    fn frame_bytes(&self) -> Result<usize, ConfigError> {
        const REASON: &str = "not a positive byte count (1-2147483647, decimal or 0x hex)";
        let parsed = match self
            .value
            .strip_prefix("0x")
            .or_else(|| self.value.strip_prefix("0X"))
        {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => self.value.parse::<u32>(),
        };
        match parsed {
            Ok(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => {
                usize::try_from(n).map_err(|_| self.invalid(REASON))
            }
            _ => Err(self.invalid(REASON)),
        }
    }

    fn interval_ms(&self) -> Result<u64, ConfigError> {
        match self.value.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(self.invalid("not a positive number of milliseconds")),
        }
    }

    /// `user:digest`, where digest is base64 of a 20-byte SHA-1 (28 chars).
    fn super_digest(&self) -> Result<String, ConfigError> {
        let (user, digest) = self
            .value
            .split_once(':')
            .ok_or_else(|| self.invalid("expected 'user:base64(sha1(user:password))'"))?;
        if user.is_empty() {
            return Err(self.invalid("user name before ':' is empty"));
        }
        let base64_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
        let well_formed = digest.len() == 28
            && digest
                .strip_suffix('=')
                .is_some_and(|body| body.chars().all(base64_char));
        if !well_formed {
            return Err(self.invalid(
                "digest after ':' is not a base64-encoded SHA-1 (28 characters ending in '=')",
            ));
        }
        Ok(self.value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    const DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

    fn parse(text: &str) -> Config {
        Config::parse(text).unwrap_or_else(|e| panic!("parse failed: {e}"))
    }

    fn parse_err(text: &str) -> ConfigError {
        match Config::parse(text) {
            Ok(cfg) => panic!("expected an error for {text:?}, got {cfg:?}"),
            Err(e) => e,
        }
    }

    /// Asserts `text` fails with an `Invalid` error for `key` on `line`.
    fn assert_invalid(text: &str, line: usize, key: &str) -> String {
        match parse_err(text) {
            ConfigError::Invalid {
                line: l,
                key: k,
                reason,
                ..
            } => {
                assert_eq!((l, k.as_str()), (line, key), "for {text:?}");
                reason
            }
            other => panic!("expected Invalid for {text:?}, got {other:?}"),
        }
    }

    fn only(words: &[&'static str]) -> FourLetterWhitelist {
        FourLetterWhitelist::Only(words.iter().copied().collect())
    }

    #[test]
    fn defaults() {
        let cfg = Config::default();
        assert_eq!(cfg.client_port, 2181);
        assert_eq!(cfg.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(cfg.data_dir, PathBuf::from("./corral-data"));
        assert_eq!(cfg.data_log_dir, None);
        assert_eq!(cfg.tick_time_ms, 3000);
        assert_eq!(cfg.min_session_timeout_ms, 6000);
        assert_eq!(cfg.max_session_timeout_ms, 60000);
        assert_eq!(cfg.max_client_cnxns, 60);
        assert!(!cfg.extended_types_enabled);
        assert_eq!(cfg.four_letter_whitelist, only(&["ruok", "srvr"]));
        assert_eq!(cfg.max_frame_bytes, 1_048_575);
        assert_eq!(cfg.container_check_interval_ms, 60_000);
        assert_eq!(cfg.super_digest, None);
        assert!(!cfg.reconfig_enabled);
        assert!(cfg.unknown_keys.is_empty());
    }

    #[test]
    fn empty_and_comment_only_text_gives_defaults() {
        assert_eq!(parse(""), Config::default());
        assert_eq!(parse("\n\n   \n\t\n"), Config::default());
        assert_eq!(
            parse("# comment\n! bang comment\n   # indented\n\t! indented\n"),
            Config::default()
        );
    }

    #[test]
    fn every_key() {
        let text = format!(
            "clientPort=2182\n\
             clientPortAddress=0.0.0.0\n\
             dataDir=/var/lib/zookeeper\n\
             dataLogDir=/var/log/zookeeper\n\
             tickTime=2000\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=90000\n\
             maxClientCnxns=0\n\
             extendedTypesEnabled=true\n\
             4lw.commands.whitelist=ruok, stat\n\
             jute.maxbuffer=4194304\n\
             znode.container.checkIntervalMs=1000\n\
             superDigest={DIGEST}\n\
             reconfigEnabled=true\n\
             forceSync=no\n\
             initLimit=10\n\
             syncLimit=5\n\
             peerType=participant\n\
             standaloneEnabled=false\n\
             admin.commandURL=/zk/commands/\n\
             admin.idleTimeout=5000\n\
             logLevel=warn,corral_server=debug\n\
             logFormat=JSON\n\
             server.1=zoo1:12888:13888\n"
        );
        let cfg = parse(&text);
        assert_eq!(
            cfg,
            Config {
                client_port: 2182,
                client_port_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                data_dir: PathBuf::from("/var/lib/zookeeper"),
                data_log_dir: Some(PathBuf::from("/var/log/zookeeper")),
                tick_time_ms: 2000,
                min_session_timeout_ms: 1000,
                max_session_timeout_ms: 90000,
                max_client_cnxns: 0,
                extended_types_enabled: true,
                four_letter_whitelist: only(&["ruok", "srvr", "stat"]),
                max_frame_bytes: 4_194_304,
                container_check_interval_ms: 1000,
                super_digest: Some(DIGEST.to_owned()),
                reconfig_enabled: true,
                force_sync: false,
                snap_count: 100_000,
                snap_retain_count: 3,
                purge_interval_hours: 0,
                admin_enabled: true,
                admin_address: None,
                admin_port: 8080,
                metrics_enabled: false,
                metrics_http_host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                metrics_http_port: 7000,
                admin_command_url: "/zk/commands".into(),
                admin_idle_timeout_ms: 5000,
                log_level: Some("warn,corral_server=debug".into()),
                log_json: true,
                servers: vec![ServerSpec {
                    id: 1,
                    host: "zoo1".into(),
                    quorum_port: 12888,
                    election_port: 13888,
                    role: Role::Participant,
                    client: None,
                }],
                init_limit: Some(10),
                sync_limit: Some(5),
                peer_type: Some(Role::Participant),
                standalone_enabled: false,
                ensemble: None,
                unknown_keys: vec![],
                file_text: None,
            }
        );
    }

    #[test]
    fn typical_zookeeper_sample_config() {
        let cfg = parse(
            "# The number of milliseconds of each tick\n\
             tickTime=2000\n\
             # The number of ticks that the initial\n\
             # synchronization phase can take\n\
             initLimit=10\n\
             syncLimit=5\n\
             dataDir=/tmp/zookeeper\n\
             clientPort=12181\n\
             #maxClientCnxns=60\n\
             #autopurge.snapRetainCount=3\n\
             autopurge.purgeInterval=1\n\
             server.1=zoo1:12888:13888\n\
             server.2=zoo2:12888:13888;12181\n\
             server.3=zoo3:12888:13888\n\
             admin.enableServer=false\n\
             metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n",
        );
        assert_eq!(cfg.tick_time_ms, 2000);
        assert_eq!(cfg.min_session_timeout_ms, 4000);
        assert_eq!(cfg.max_session_timeout_ms, 40000);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/zookeeper"));
        assert_eq!(cfg.max_client_cnxns, 60);
        assert_eq!(cfg.purge_interval_hours, 1);
        assert_eq!((cfg.init_limit, cfg.sync_limit), (Some(10), Some(5)));
        assert_eq!(
            cfg.servers
                .iter()
                .map(|s| (s.id, s.host.as_str()))
                .collect::<Vec<_>>(),
            [(1, "zoo1"), (2, "zoo2"), (3, "zoo3")]
        );
        assert!(cfg.describes_ensemble());
        assert_eq!(cfg.ensemble, None, "parse alone does not read myid");
        assert!(cfg.unknown_keys.is_empty(), "{:?}", cfg.unknown_keys);
        assert!(!cfg.admin_enabled);
        assert!(cfg.metrics_enabled);
        assert_eq!(cfg.metrics_http_port, 7000);
        let err = Config::parse("metricsProvider.className=com.example.Statsd\n").unwrap_err().to_string();
        assert!(err.contains("PrometheusMetricsProvider"), "{err}");
        for quiet in ["org.apache.zookeeper.metrics.impl.DefaultMetricsProvider", "org.apache.zookeeper.metrics.impl.NullMetricsProvider"] {
            assert!(!parse(&format!("metricsProvider.className={quiet}\n")).metrics_enabled, "{quiet}");
        }
    }

    #[test]
    fn admin_idle_timeout_is_milliseconds_and_zero_is_never() {
        use std::time::Duration;
        assert_eq!(Config::default().admin_idle_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(parse("admin.idleTimeout=250\n").admin_idle_timeout(), Some(Duration::from_millis(250)));
        assert_eq!(parse("admin.idleTimeout=0\n").admin_idle_timeout(), None);
        assert_eq!(parse("admin.idleTimeout=-1\n").admin_idle_timeout(), None);
    }

    #[test]
    fn bad_admin_url_and_log_keys_are_errors() {
        for (text, reason) in [
            ("admin.commandURL=commands\n", "URL path"),
            ("admin.commandURL=/\n", "URL path"),
            ("admin.commandURL=/a b\n", "URL path"),
            ("admin.idleTimeout=30s\n", "whole number of milliseconds"),
            ("admin.idleTimeout=\n", "whole number of milliseconds"),
            ("logFormat=xml\n", "text or json"),
            ("logLevel=\n", "empty"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn later_lines_override_earlier_ones() {
        let cfg = parse("clientPort=1\nclientPort=2\ndataLogDir=/a\ndataLogDir=/b\n");
        assert_eq!(cfg.client_port, 2);
        assert_eq!(cfg.data_log_dir, Some(PathBuf::from("/b")));
    }

    #[test]
    fn whitespace_is_trimmed_around_keys_and_values() {
        let cfg = parse("   clientPort   =   2183   \n\tdataDir\t=\t/data dir/x \t\n");
        assert_eq!(cfg.client_port, 2183);
        assert_eq!(cfg.data_dir, PathBuf::from("/data dir/x"));
    }

    #[test]
    fn crlf_line_endings_and_bom() {
        let cfg = parse("\u{feff}clientPort=2184\r\ntickTime=1000\r\n# c\r\n");
        assert_eq!(cfg.client_port, 2184);
        assert_eq!(cfg.tick_time_ms, 1000);
        assert!(cfg.unknown_keys.is_empty());
    }

    #[test]
    fn colon_separator_when_no_equals() {
        let cfg = parse("clientPort: 2185\nclientPortAddress : ::1\n");
        assert_eq!(cfg.client_port, 2185);
        assert_eq!(cfg.client_port_address, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn equals_takes_precedence_over_colon() {
        let cfg = parse("server.1=host:12888:13888\nclientPortAddress=::1\n");
        assert_eq!(cfg.servers[0].host, "host");
        assert_eq!(cfg.servers[0].quorum_port, 12888);
        assert!(cfg.unknown_keys.is_empty());
        assert_eq!(cfg.client_port_address, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn hash_after_value_is_not_a_comment() {
        // Java properties have no trailing comments, so this is a bad port.
        assert_invalid("clientPort=2181 # default\n", 1, "clientPort");
    }

    #[test]
    fn syntax_errors() {
        for (text, line) in [
            ("clientPort 2181", 1),
            ("# ok\n\njustakey\n", 3),
            ("=2181", 1),
            ("  : value", 1),
            ("dataDir=/a\\\n  /b", 1),
        ] {
            match parse_err(text) {
                ConfigError::Syntax { line: l, .. } => assert_eq!(l, line, "for {text:?}"),
                other => panic!("expected Syntax for {text:?}, got {other:?}"),
            }
        }
        // An escaped (even) trailing backslash is not a continuation.
        assert_eq!(
            parse("dataDir=C:\\data\\\\\n").data_dir,
            PathBuf::from("C:\\data\\\\")
        );
    }

    #[test]
    fn syntax_error_message() {
        assert_eq!(
            parse_err("tickTime=1\nbogus line\n").to_string(),
            "line 2: expected 'key=value': 'bogus line'"
        );
    }

    #[test]
    fn invalid_error_message_names_line_key_value_and_reason() {
        let err = parse_err("# header\n\nclientPort = abc\n");
        assert_eq!(
            err.to_string(),
            "line 3: clientPort = 'abc': not a port number (0-65535)"
        );
    }

    #[test]
    fn client_port() {
        assert_eq!(parse("clientPort=0").client_port, 0);
        assert_eq!(parse("clientPort=65535").client_port, 65535);
        for bad in ["abc", "", "-1", "65536", "21 81", "2181.0", "0x885"] {
            assert_invalid(&format!("clientPort={bad}"), 1, "clientPort");
        }
    }

    #[test]
    fn client_port_address() {
        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(
            parse("clientPortAddress=10.1.2.3").client_port_address,
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
        );
        assert_eq!(
            parse("clientPortAddress=fe80::1").client_port_address,
            IpAddr::V6(v6)
        );
        assert_eq!(
            parse("clientPortAddress=[fe80::1]").client_port_address,
            IpAddr::V6(v6)
        );
        for bad in ["localhost", "", "1.2.3", "256.0.0.1", "[::1", "::1]"] {
            assert_invalid(&format!("clientPortAddress={bad}"), 1, "clientPortAddress");
        }
    }

    #[test]
    fn data_dirs_are_kept_as_given() {
        let cfg = parse("dataDir=relative/dir\ndataLogDir=./log\n");
        assert_eq!(cfg.data_dir, PathBuf::from("relative/dir"));
        assert_eq!(cfg.data_log_dir, Some(PathBuf::from("./log")));
        assert_invalid("dataDir=", 1, "dataDir");
        assert_invalid("dataLogDir =  ", 1, "dataLogDir");
    }

    #[test]
    fn tick_time() {
        assert_eq!(parse("tickTime=1").tick_time_ms, 1);
        assert_eq!(parse("tickTime=2147483647").tick_time_ms, 2_147_483_647);
        for bad in ["0", "-1", "abc", "", "2147483648", "1.5", "2000ms"] {
            let reason = assert_invalid(&format!("tickTime={bad}"), 1, "tickTime");
            assert!(reason.contains("positive"), "{reason}");
        }
    }

    #[test]
    fn session_timeouts_derive_from_tick_time_even_when_it_comes_later() {
        let cfg = parse("clientPort=2181\ntickTime=500\n");
        assert_eq!(
            (cfg.min_session_timeout_ms, cfg.max_session_timeout_ms),
            (1000, 10000)
        );
        // Explicit -1 means "default", and may override an earlier value.
        let cfg = parse(
            "minSessionTimeout=5\nminSessionTimeout=-1\nmaxSessionTimeout=-1\ntickTime=100\n",
        );
        assert_eq!(
            (cfg.min_session_timeout_ms, cfg.max_session_timeout_ms),
            (200, 2000)
        );
    }

    #[test]
    fn explicit_session_timeouts_do_not_depend_on_tick_time() {
        let cfg = parse("minSessionTimeout=100\nmaxSessionTimeout=200\ntickTime=10000\n");
        assert_eq!(
            (cfg.min_session_timeout_ms, cfg.max_session_timeout_ms),
            (100, 200)
        );
        // Only one given: the other is still derived.
        let cfg = parse("maxSessionTimeout=120000\ntickTime=1000\n");
        assert_eq!(
            (cfg.min_session_timeout_ms, cfg.max_session_timeout_ms),
            (2000, 120000)
        );
        // min == max is fine.
        let cfg = parse("minSessionTimeout=7000\nmaxSessionTimeout=7000\n");
        assert_eq!(cfg.negotiate_timeout(1), 7000);
    }

    #[test]
    fn derived_session_timeouts_saturate_at_i32_max() {
        let cfg = parse("tickTime=2000000000\n");
        assert_eq!(cfg.min_session_timeout_ms, MAX_TIMEOUT_MS);
        assert_eq!(cfg.max_session_timeout_ms, MAX_TIMEOUT_MS);
    }

    #[test]
    fn malformed_session_timeouts() {
        for key in ["minSessionTimeout", "maxSessionTimeout"] {
            for bad in ["abc", "", "-2", "2147483648", "1e3", "10 s"] {
                assert_invalid(&format!("tickTime=1000\n{key}={bad}"), 2, key);
            }
        }
    }

    #[test]
    fn min_greater_than_max_is_an_error() {
        match parse_err("minSessionTimeout=5000\nmaxSessionTimeout=4000\n") {
            ConfigError::SessionTimeoutRange { min_ms, max_ms } => {
                assert_eq!((min_ms, max_ms), (5000, 4000));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Also when one side is derived: max defaults to 20 * 3000.
        let err = parse_err("minSessionTimeout=60001\n");
        assert_eq!(
            err.to_string(),
            "minSessionTimeout (60001 ms) must not be larger than maxSessionTimeout (60000 ms)"
        );
        // ...or derived from a tickTime that appears later.
        assert!(matches!(
            parse_err("maxSessionTimeout=1000\ntickTime=1000\n"),
            ConfigError::SessionTimeoutRange {
                min_ms: 2000,
                max_ms: 1000
            }
        ));
    }

    #[test]
    fn max_client_cnxns() {
        assert_eq!(parse("maxClientCnxns=0").max_client_cnxns, 0);
        assert_eq!(parse("maxClientCnxns=1000").max_client_cnxns, 1000);
        for bad in ["-1", "abc", "", "4294967296", "10.0"] {
            assert_invalid(&format!("maxClientCnxns={bad}"), 1, "maxClientCnxns");
        }
    }

    #[test]
    fn booleans() {
        for (value, expected) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("yes", true),
            ("YES", true),
            ("false", false),
            ("False", false),
            ("no", false),
            ("No", false),
        ] {
            for key in ["extendedTypesEnabled", "reconfigEnabled"] {
                let cfg = parse(&format!("{key}={value}"));
                let got = match key {
                    "extendedTypesEnabled" => cfg.extended_types_enabled,
                    _ => cfg.reconfig_enabled,
                };
                assert_eq!(got, expected, "{key}={value}");
            }
        }
        for key in ["extendedTypesEnabled", "reconfigEnabled"] {
            for bad in ["1", "0", "on", "off", "", "tru", "y"] {
                let reason = assert_invalid(&format!("{key}={bad}"), 1, key);
                assert_eq!(reason, "not a boolean (true/false/yes/no)");
            }
        }
    }

    #[test]
    fn jute_maxbuffer_decimal_and_hex() {
        assert_eq!(parse("jute.maxbuffer=1048575").max_frame_bytes, 1_048_575);
        assert_eq!(parse("jute.maxbuffer=0xfffff").max_frame_bytes, 0xfffff);
        assert_eq!(parse("jute.maxbuffer=0X400000").max_frame_bytes, 0x40_0000);
        assert_eq!(
            parse("jute.maxbuffer=0x7FFFFFFF").max_frame_bytes,
            0x7fff_ffff
        );
        assert_eq!(parse("jute.maxbuffer = 1").max_frame_bytes, 1);
        for bad in [
            "0",
            "0x0",
            "0x",
            "-1",
            "-0x10",
            "abc",
            "",
            "xfffff",
            "0xfffffg",
            "2147483648",
            "0x80000000",
            "1MB",
        ] {
            assert_invalid(&format!("jute.maxbuffer={bad}"), 1, "jute.maxbuffer");
        }
    }

    #[test]
    fn container_check_interval() {
        assert_eq!(
            parse("znode.container.checkIntervalMs=1").container_check_interval_ms,
            1
        );
        assert_eq!(
            parse("znode.container.checkIntervalMs=86400000").container_check_interval_ms,
            86_400_000
        );
        for bad in ["0", "-1", "abc", "", "1.5"] {
            assert_invalid(
                &format!("znode.container.checkIntervalMs={bad}"),
                1,
                "znode.container.checkIntervalMs",
            );
        }
        // Other znode.container.* keys are ZooKeeper's, not ours.
        let cfg = parse("znode.container.maxPerMinute=100\n");
        assert_eq!(cfg.unknown_keys, ["znode.container.maxPerMinute"]);
    }

    #[test]
    fn super_digest() {
        assert_eq!(
            parse(&format!("superDigest={DIGEST}"))
                .super_digest
                .as_deref(),
            Some(DIGEST)
        );
        assert_eq!(
            parse(&format!(
                "DigestAuthenticationProvider.superDigest = {DIGEST} "
            ))
            .super_digest
            .as_deref(),
            Some(DIGEST)
        );
        for bad in [
            "",
            "nocolon",
            ":D/InIHSb7yEEbrWz8b9l71RjZJU=",
            "super:",
            "super:password",
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU",
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU==",
            "super:D/InIHSb7yEEbrWz8b9l71Rj*JU=",
            "super:D/InIHSb7yEEbrWz8b9l71RjZé=",
        ] {
            assert_invalid(&format!("superDigest={bad}"), 1, "superDigest");
        }
    }

    #[test]
    fn whitelist_default_is_srvr_and_ruok() {
        let w = FourLetterWhitelist::default();
        assert!(w.allows("srvr") && w.allows("ruok"));
        for word in ALL_FOUR_LETTER_WORDS.iter().filter(|w| !matches!(**w, "srvr" | "ruok")) {
            assert!(!w.allows(word), "{word}");
        }
    }

    #[test]
    fn whitelist_star_allows_every_known_word() {
        for value in ["*", " * ", "stat, *", "*,ruok"] {
            let cfg = parse(&format!("4lw.commands.whitelist={value}"));
            assert_eq!(
                cfg.four_letter_whitelist,
                FourLetterWhitelist::All,
                "{value}"
            );
            for word in ALL_FOUR_LETTER_WORDS {
                assert!(cfg.four_letter_whitelist.allows(word), "{word}");
            }
            assert!(!cfg.four_letter_whitelist.allows("xxxx"));
            assert!(!cfg.four_letter_whitelist.allows(""));
        }
    }

    #[test]
    fn whitelist_list() {
        let cfg = parse("4lw.commands.whitelist=stat, ruok,conf ,  isro\n");
        let w = &cfg.four_letter_whitelist;
        assert_eq!(*w, only(&["conf", "isro", "ruok", "srvr", "stat"]));
        assert!(w.allows("stat") && w.allows("ruok") && w.allows("conf") && w.allows("isro"));
        // srvr is always enabled, as in ZooKeeper.
        assert!(w.allows("srvr"));
        assert!(!w.allows("mntr"));
        assert!(!w.allows("wchp"));
        // Case-insensitive in the file; commands are matched as sent.
        let w = FourLetterWhitelist::parse("MNTR,Wchs").unwrap();
        assert_eq!(w, only(&["mntr", "srvr", "wchs"]));
        assert!(!w.allows("MNTR"));
        // Duplicates, empty entries and an empty value are harmless.
        assert_eq!(
            FourLetterWhitelist::parse("ruok,,ruok, ,").unwrap(),
            only(&["ruok", "srvr"])
        );
        // An explicit empty list means ZooKeeper's minimum, not Corral's default.
        assert_eq!(parse("4lw.commands.whitelist=").four_letter_whitelist, only(&["srvr"]));
    }

    #[test]
    fn whitelist_every_word_parses() {
        let all = ALL_FOUR_LETTER_WORDS.join(",");
        let w = FourLetterWhitelist::parse(&all).unwrap();
        assert_eq!(
            w,
            FourLetterWhitelist::Only(ALL_FOUR_LETTER_WORDS.iter().copied().collect())
        );
        assert_eq!(ALL_FOUR_LETTER_WORDS.len(), 18);
    }

    #[test]
    fn whitelist_unknown_word_is_an_error() {
        for bad in ["stat,bogus", "stats", "ruok;stat", "icfg", "**"] {
            let reason = assert_invalid(
                &format!("tickTime=2000\n4lw.commands.whitelist={bad}"),
                2,
                "4lw.commands.whitelist",
            );
            assert!(reason.starts_with("unknown four letter word"), "{reason}");
        }
        let err = parse_err("4lw.commands.whitelist=stat, bogus");
        assert!(
            err.to_string().starts_with(
                "line 1: 4lw.commands.whitelist = 'stat, bogus': unknown four letter word 'bogus'"
            ),
            "{err}"
        );
    }

    #[test]
    fn whitelist_display() {
        assert_eq!(FourLetterWhitelist::All.to_string(), "*");
        assert_eq!(FourLetterWhitelist::default().to_string(), "ruok,srvr");
        assert_eq!(
            FourLetterWhitelist::parse("stat,ruok").unwrap().to_string(),
            "ruok,srvr,stat"
        );
    }

    #[test]
    fn unknown_keys_are_collected_once_in_order() {
        let cfg = parse(
            "electionAlg=3\nclientport=2182\nserver.1=a:1:2\nelectionAlg=3\nfoo.bar: baz\nsyncLimit=1\n",
        );
        assert_eq!(cfg.unknown_keys, ["electionAlg", "clientport", "foo.bar"]);
        // The misspelt key did not take effect: keys are case-sensitive.
        assert_eq!(cfg.client_port, 2181);
    }

    #[test]
    fn snapshots_and_purge() {
        let cfg = parse("snapCount=500\nautopurge.snapRetainCount=1\nautopurge.purgeInterval=2\n");
        assert_eq!((cfg.snap_count, cfg.snap_retain_count, cfg.purge_interval_hours), (500, 3, 2));
        assert!(Config::parse("snapCount=1\n").is_err());
        assert!(Config::parse("autopurge.purgeInterval=-1\n").is_err());
    }

    #[test]
    fn force_sync() {
        assert!(Config::default().force_sync);
        assert!(!parse("forceSync=no\n").force_sync);
        assert!(parse("forceSync=yes\n").force_sync);
        assert!(Config::parse("forceSync=maybe\n").is_err());
    }

    #[test]
    fn unknown_keys_values_are_not_validated() {
        let cfg = parse("electionAlg=not a number\nquorumListenOnAllIPs=maybe\n");
        assert_eq!(cfg.unknown_keys, ["electionAlg", "quorumListenOnAllIPs"]);
    }

    #[test]
    fn zookeeper_keys_are_told_apart_from_typos() {
        for key in [
            "initLimit",
            "syncLimit",
            "server.1",
            "group.1",
            "weight.3",
            "autopurge.snapRetainCount",
            "admin.serverPort",
            "metricsProvider.httpPort",
            "standaloneEnabled",
            "preAllocSize",
            "globalOutstandingLimit",
            "forceSync",
            "peerType",
            "snapCount",
            "4lw.commands.whitelist",
            "clientPort",
            "ssl.keyStore.location",
            "quorum.auth.enableSasl",
        ] {
            assert!(is_zookeeper_key(key), "{key}");
        }
        for key in ["clientport", "tickTim", "dataDirectory", "foo", "server"] {
            assert!(!is_zookeeper_key(key), "{key}");
        }
    }

    #[test]
    fn negotiate_timeout_clamps_into_range() {
        let cfg = parse("minSessionTimeout=4000\nmaxSessionTimeout=40000\n");
        assert_eq!(cfg.negotiate_timeout(0), 4000);
        assert_eq!(cfg.negotiate_timeout(-5), 4000);
        assert_eq!(cfg.negotiate_timeout(i32::MIN), 4000);
        assert_eq!(cfg.negotiate_timeout(3999), 4000);
        assert_eq!(cfg.negotiate_timeout(4000), 4000);
        assert_eq!(cfg.negotiate_timeout(30000), 30000);
        assert_eq!(cfg.negotiate_timeout(40000), 40000);
        assert_eq!(cfg.negotiate_timeout(40001), 40000);
        assert_eq!(cfg.negotiate_timeout(i32::MAX), 40000);

        let defaults = Config::default();
        assert_eq!(defaults.negotiate_timeout(10_000), 10_000);
        assert_eq!(defaults.negotiate_timeout(1), 6000);
        assert_eq!(defaults.negotiate_timeout(100_000), 60_000);
    }

    #[test]
    fn negotiate_timeout_never_panics_on_hand_built_configs() {
        let cfg = Config {
            min_session_timeout_ms: 50,
            max_session_timeout_ms: 10,
            ..Config::default()
        };
        assert_eq!(cfg.negotiate_timeout(30), 10);
        let cfg = Config {
            min_session_timeout_ms: u32::MAX,
            max_session_timeout_ms: u32::MAX,
            ..Config::default()
        };
        assert_eq!(cfg.negotiate_timeout(0), i32::MAX);
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("corral-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zoo.cfg");
        std::fs::write(&path, "clientPort=3181\ndataDir=data\nelectionAlg=3\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cfg.client_port, 3181);
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
        assert_eq!(cfg.unknown_keys, ["electionAlg"]);
    }

    #[test]
    fn load_reports_missing_file_with_its_path() {
        let path = Path::new("/nonexistent/corral/zoo.cfg");
        match Config::load(path) {
            Err(ConfigError::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = Config::load(path).unwrap_err().to_string();
        assert!(
            msg.starts_with("cannot read config file /nonexistent/corral/zoo.cfg: "),
            "{msg}"
        );
    }

    // ---- Ensembles: server.N, initLimit, syncLimit, peerType, myid ----

    const ENSEMBLE3: &str = "initLimit=5\nsyncLimit=2\n\
                             server.1=zoo1:12888:13888\n\
                             server.2=zoo2:12888:13888\n\
                             server.3=zoo3:12888:13888\n";

    /// Parses `server.7=value` within a valid ensemble of other servers.
    fn server(value: &str) -> ServerSpec {
        let cfg = parse(&format!(
            "initLimit=5\nsyncLimit=2\nserver.1=p1:12888:13888\nserver.2=p2:12888:13888\n\
             server.7={value}\n"
        ));
        assert_eq!(cfg.servers.len(), 3);
        let spec = cfg.servers[2].clone();
        assert_eq!(ServerSpec::parse(7, value), Ok(spec.clone()));
        spec
    }

    fn server_err(value: &str) -> String {
        assert_invalid(&format!("tickTime=2000\nserver.7={value}\n"), 2, "server.7")
    }

    fn spec(id: u64, host: &str, role: Role, client: Option<(Option<&str>, u16)>) -> ServerSpec {
        ServerSpec {
            id,
            host: host.to_owned(),
            quorum_port: 12888,
            election_port: 13888,
            role,
            client: client.map(|(h, port)| ClientAddress {
                host: h.map(str::to_owned),
                port,
            }),
        }
    }

    fn ensemble_err(text: &str) -> String {
        match parse_err(text) {
            ConfigError::Ensemble(reason) => reason,
            other => panic!("expected Ensemble for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn server_line_forms() {
        use Role::{Observer, Participant};
        let cases: &[(&str, ServerSpec)] = &[
            ("zoo1:12888:13888", spec(7, "zoo1", Participant, None)),
            (
                "zoo1:12888:13888:participant",
                spec(7, "zoo1", Participant, None),
            ),
            ("zoo1:12888:13888:observer", spec(7, "zoo1", Observer, None)),
            ("zoo1:12888:13888:OBSERVER", spec(7, "zoo1", Observer, None)),
            (
                "zoo1:12888:13888:Participant",
                spec(7, "zoo1", Participant, None),
            ),
            (
                "10.0.0.1:12888:13888",
                spec(7, "10.0.0.1", Participant, None),
            ),
            (
                "zoo1:12888:13888;12181",
                spec(7, "zoo1", Participant, Some((None, 12181))),
            ),
            (
                "zoo1:12888:13888:observer;12181",
                spec(7, "zoo1", Observer, Some((None, 12181))),
            ),
            (
                "zoo1:12888:13888;0.0.0.0:12181",
                spec(7, "zoo1", Participant, Some((Some("0.0.0.0"), 12181))),
            ),
            (
                "zoo1:12888:13888:participant;client.example:12181",
                spec(
                    7,
                    "zoo1",
                    Participant,
                    Some((Some("client.example"), 12181)),
                ),
            ),
            ("[::1]:12888:13888", spec(7, "::1", Participant, None)),
            (
                "[2001:db8::7]:12888:13888:observer;[2001:db8::7]:12181",
                spec(
                    7,
                    "2001:db8::7",
                    Observer,
                    Some((Some("2001:db8::7"), 12181)),
                ),
            ),
            (
                "[fe80::1%eth0]:12888:13888;[::]:12181",
                spec(7, "fe80::1%eth0", Participant, Some((Some("::"), 12181))),
            ),
            // The client port, like clientPort, may be 0.
            (
                "zoo1:12888:13888;0",
                spec(7, "zoo1", Participant, Some((None, 0))),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(&server(value), expected, "{value}");
        }
        // Whitespace around the whole value is trimmed like any value's.
        assert_eq!(
            parse("server.7 =  zoo1:12888:13888  \n").servers,
            [spec(7, "zoo1", Participant, None)]
        );
        // The id is the key's suffix.
        assert_eq!(parse("server.42=zoo1:12888:13888\n").servers[0].id, 42);
    }

    #[test]
    fn server_line_errors() {
        let cases = [
            ("", "missing quorum and election ports"),
            ("zoo1", "missing quorum and election ports"),
            ("[::1]", "missing quorum and election ports"),
            ("zoo1:12888", "missing election port"),
            ("zoo1:abc:13888", "quorum port 'abc' is not a port number"),
            ("zoo1:0:13888", "quorum port '0' is not a port number"),
            (
                "zoo1:12888:65536",
                "election port '65536' is not a port number",
            ),
            ("zoo1:12888:", "election port '' is not a port number"),
            (
                "zoo1: 12888:13888",
                "quorum port ' 12888' is not a port number",
            ),
            (
                "zoo1:12888:12888",
                "quorum port and election port must be different",
            ),
            (
                "zoo1:12888:13888:leader",
                "unknown role 'leader' (participant or observer)",
            ),
            ("zoo1:12888:13888:", "unknown role ''"),
            (
                "zoo1:12888:13888:observer:x",
                "too many ':'-separated fields",
            ),
            ("::1:12888:13888", "an IPv6 address must be in brackets"),
            ("[::1:12888:13888", "has no matching ']'"),
            ("[zoo1]:12888:13888", "is not an IPv6 address in brackets"),
            ("[::1]12888:13888", "expected ':' after ']'"),
            (":12888:13888", "empty host"),
            ("zoo 1:12888:13888", "host 'zoo 1' contains whitespace"),
            ("zoo1:12888:13888;", "nothing after ';'"),
            (
                "zoo1:12888:13888;abc",
                "client port 'abc' is not a port number",
            ),
            (
                "zoo1:12888:13888;70000",
                "client port '70000' is not a port number",
            ),
            (
                "zoo1:12888:13888;zoo1:12181:1",
                "must be port or address:port",
            ),
            ("zoo1:12888:13888;:12181", "empty host"),
            ("zoo1:12888:13888;[zoo1]:12181", "is not an IPv6 address"),
            ("zoo1:12888:13888;12181;12182", "more than one ';'"),
            ("a:12888:13888|b:12888:13888", "multiAddress"),
        ];
        for (value, reason) in cases {
            let got = server_err(value);
            assert!(
                got.contains(reason),
                "{value:?}: expected {reason:?} in {got:?}"
            );
        }
        // The message names the line, key, value and reason.
        let msg = Config::parse("server.3=zoo3:12888\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("line 1: server.3 = 'zoo3:12888': missing election port"),
            "{msg}"
        );
    }

    #[test]
    fn server_ids() {
        for key in [
            "server.abc",
            "server.",
            "server.0",
            "server.-1",
            "server.+1",
            "server.1.2",
            "server. 1",
            "server.9223372036854775808",
        ] {
            let reason = assert_invalid(&format!("{key}=zoo1:12888:13888\n"), 1, key);
            assert!(reason.contains("is not a server id"), "{key}: {reason}");
        }
        let cfg = parse(
            "server.9223372036854775807=zoo1:12888:13888\nserver.255=zoo2:12888:13888\n\
             initLimit=5\nsyncLimit=2\n",
        );
        assert_eq!(
            cfg.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
            [255, 9_223_372_036_854_775_807],
            "sorted by id"
        );
    }

    #[test]
    fn duplicate_server_ids_are_rejected() {
        let reason = assert_invalid(
            "server.1=zoo1:12888:13888\nserver.2=zoo2:12888:13888\nserver.1=zoo3:12888:13888\n",
            3,
            "server.1",
        );
        assert_eq!(reason, "server id 1 is already defined on line 1");
        let reason = assert_invalid(
            "server.1=zoo1:12888:13888\nserver.01=zoo2:12888:13888\n",
            2,
            "server.01",
        );
        assert_eq!(reason, "server id 1 is already defined on line 1");
    }

    #[test]
    fn a_quorum_or_election_port_twice_on_one_host_is_rejected() {
        // The usual one-machine test ensemble: one host, distinct ports.
        let cfg = parse(
            "server.1=127.0.0.1:12888:13888\n\
             server.2=127.0.0.1:12889:13889\n\
             server.3=127.0.0.1:12890:13890\n\
             initLimit=5\nsyncLimit=2\n",
        );
        assert_eq!(cfg.servers.len(), 3);
        // Same ports on different hosts are fine (ENSEMBLE3).
        assert_eq!(parse(ENSEMBLE3).servers.len(), 3);

        for (second, port) in [
            ("zoo1:12888:13888", 12888),
            ("ZOO1:13888:14888", 13888),
            ("zoo1:14888:12888", 12888),
        ] {
            let reason = assert_invalid(
                &format!("server.1=zoo1:12888:13888\nserver.2={second}\n"),
                2,
                "server.2",
            );
            assert!(
                reason.starts_with(&format!("port {port} on host ")),
                "{second}: {reason}"
            );
            assert!(
                reason.ends_with("is already used by server.1 (line 1)"),
                "{reason}"
            );
        }
    }

    #[test]
    fn standalone_or_ensemble() {
        let ensemble = |text: &str| parse(text).describes_ensemble();
        // No server lines.
        assert!(!ensemble(""));
        assert!(parse("").servers.is_empty());
        // One participant: standalone, the line ignored; no limits needed.
        assert!(!ensemble("server.1=zoo1:12888:13888\n"));
        assert!(!ensemble(
            "server.1=zoo1:12888:13888:participant\nstandaloneEnabled=true\n"
        ));
        // One participant with standaloneEnabled=false: an ensemble of one.
        assert!(ensemble(
            "server.1=zoo1:12888:13888\nstandaloneEnabled=false\ninitLimit=5\nsyncLimit=2\n"
        ));
        // Two or more participants.
        assert!(ensemble(
            "server.1=zoo1:12888:13888\nserver.2=zoo2:12888:13888\ninitLimit=5\nsyncLimit=2\n"
        ));
        assert!(ensemble(ENSEMBLE3));
        assert!(ensemble(&format!(
            "{ENSEMBLE3}server.4=zoo4:12888:13888:observer\n"
        )));
        // standaloneEnabled may come after the server lines.
        assert!(ensemble(
            "initLimit=5\nsyncLimit=2\nserver.1=zoo1:12888:13888\nstandaloneEnabled=false\n"
        ));
        // A participant and observers, standaloneEnabled=false: an ensemble.
        assert!(ensemble(
            "standaloneEnabled=false\ninitLimit=5\nsyncLimit=2\n\
             server.1=zoo1:12888:13888\nserver.2=zoo2:12888:13888:observer\n"
        ));
        assert!(Config::default().standalone_enabled);
        assert!(!Config::default().describes_ensemble());
    }

    #[test]
    fn invalid_mixes_of_server_lines() {
        let reason = ensemble_err("server.1=zoo1:12888:13888:observer\n");
        assert!(
            reason.contains("observers without participants"),
            "{reason}"
        );
        let reason = ensemble_err(
            "server.1=zoo1:12888:13888:observer\nserver.2=zoo2:12888:13888:observer\n",
        );
        assert!(reason.starts_with("2 observer"), "{reason}");
        let reason =
            ensemble_err("server.1=zoo1:12888:13888\nserver.2=zoo2:12888:13888:observer\n");
        assert!(reason.contains("observers without a quorum"), "{reason}");
        let reason = ensemble_err("standaloneEnabled=false\n");
        assert!(reason.contains("at least one participant"), "{reason}");
        let reason = ensemble_err("standaloneEnabled=false\nserver.1=zoo1:12888:13888:observer\n");
        assert!(reason.contains("at least one participant"), "{reason}");
    }

    #[test]
    fn init_and_sync_limits() {
        let cfg = parse(ENSEMBLE3);
        assert_eq!((cfg.init_limit, cfg.sync_limit), (Some(5), Some(2)));
        // Optional when standalone, and then only validated.
        let cfg = parse("initLimit=10\nsyncLimit=5\n");
        assert_eq!((cfg.init_limit, cfg.sync_limit), (Some(10), Some(5)));
        assert_eq!(parse("").init_limit, None);
        // 0 means "not set", as in ZooKeeper.
        assert_eq!(parse("initLimit=0\n").init_limit, None);
        assert_eq!(
            parse("syncLimit=2147483647\n").sync_limit,
            Some(i32::MAX as u32)
        );
        for bad in ["-1", "abc", "", "1.5", "2147483648"] {
            let reason = assert_invalid(&format!("initLimit={bad}\n"), 1, "initLimit");
            assert!(reason.contains("ticks"), "{reason}");
            assert_invalid(&format!("syncLimit={bad}\n"), 1, "syncLimit");
        }

        let servers = "server.1=zoo1:12888:13888\nserver.2=zoo2:12888:13888\n\
                       server.3=zoo3:12888:13888\n";
        let reason = ensemble_err(&format!("{servers}syncLimit=2\n"));
        assert_eq!(
            reason,
            "initLimit is not set; it is required for an ensemble (3 servers in zoo.cfg)"
        );
        let reason = ensemble_err(&format!("{servers}initLimit=5\n"));
        assert!(reason.starts_with("syncLimit is not set"), "{reason}");
        let reason = ensemble_err(&format!("{servers}initLimit=0\nsyncLimit=2\n"));
        assert!(reason.starts_with("initLimit is not set"), "{reason}");
        // An ensemble of one (standaloneEnabled=false) needs them too.
        let reason = ensemble_err("standaloneEnabled=false\nserver.1=zoo1:12888:13888\n");
        assert!(reason.contains("(1 servers in zoo.cfg)"), "{reason}");
    }

    #[test]
    fn peer_type() {
        assert_eq!(parse("").peer_type, None);
        assert_eq!(parse("peerType=observer\n").peer_type, Some(Role::Observer));
        assert_eq!(
            parse("peerType=Participant\n").peer_type,
            Some(Role::Participant)
        );
        let reason = assert_invalid("peerType=leader\n", 1, "peerType");
        assert_eq!(reason, "not a peer type (participant or observer)");

        let observer4 = format!("{ENSEMBLE3}server.4=zoo4:12888:13888:observer\n");
        // Agreeing, absent, or mismatched: the server list decides the role.
        for (peer_type, my_id, ignored) in [
            ("", 4, None),
            ("peerType=observer\n", 4, None),
            ("peerType=participant\n", 4, Some(Role::Participant)),
            ("peerType=observer\n", 1, Some(Role::Observer)),
            ("peerType=participant\n", 1, None),
        ] {
            let mut cfg = parse(&format!("{peer_type}{observer4}"));
            cfg.set_my_id(my_id).unwrap();
            let ensemble = cfg.ensemble.as_ref().unwrap();
            let role = if my_id == 4 {
                Role::Observer
            } else {
                Role::Participant
            };
            assert_eq!(ensemble.me().role, role);
            assert_eq!(
                cfg.ignored_peer_type(),
                ignored,
                "{peer_type:?} for {my_id}"
            );
        }
        // Standalone: nothing to disagree with.
        assert_eq!(parse("peerType=observer\n").ignored_peer_type(), None);
    }

    #[test]
    fn unsupported_quorum_keys_are_errors() {
        let reason = assert_invalid(
            "dynamicConfigFile=/etc/zookeeper/zoo.cfg.dynamic\n",
            1,
            "dynamicConfigFile",
        );
        assert!(reason.contains("not supported"), "{reason}");
        for key in ["group.1", "weight.2"] {
            let reason = assert_invalid(&format!("{key}=1:2:3\n"), 1, key);
            assert!(reason.contains("hierarchical quorums"), "{reason}");
        }
    }

    #[test]
    fn quorum_keys_are_not_unknown() {
        let cfg = parse(&format!(
            "{ENSEMBLE3}peerType=participant\nstandaloneEnabled=true\n"
        ));
        assert!(cfg.unknown_keys.is_empty(), "{:?}", cfg.unknown_keys);
    }

    #[test]
    fn ensemble_helpers() {
        let mut cfg = parse(&format!(
            "{ENSEMBLE3}server.4=zoo4:12888:13888:observer\nserver.5=zoo5:12888:13888:observer\n"
        ));
        cfg.set_my_id(2).unwrap();
        let e = cfg.ensemble.clone().unwrap();
        assert_eq!((e.my_id, e.init_limit, e.sync_limit), (2, 5, 2));
        assert_eq!(e.servers, cfg.servers);
        assert_eq!(e.me().host, "zoo2");
        assert_eq!(e.server(5).map(|s| s.role), Some(Role::Observer));
        assert_eq!(e.server(6), None);
        assert_eq!(e.voters().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(e.is_observer(4) && e.is_observer(5));
        assert!(!e.is_observer(1) && !e.is_observer(6));
        assert_eq!(e.quorum_size(), 2, "observers do not count");

        let quorum = |participants: u64| {
            let mut text = String::from("standaloneEnabled=false\ninitLimit=5\nsyncLimit=2\n");
            for id in 1..=participants {
                text += &format!("server.{id}=zoo{id}:12888:13888\n");
            }
            let mut cfg = parse(&text);
            cfg.set_my_id(1).unwrap();
            cfg.ensemble.unwrap().quorum_size()
        };
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn set_my_id_checks_the_id() {
        let mut cfg = parse(ENSEMBLE3);
        match cfg.set_my_id(4).unwrap_err() {
            ConfigError::MyId { path, reason } => {
                assert_eq!(path, PathBuf::from("./corral-data/myid"));
                assert_eq!(
                    reason,
                    "id 4 has no server.4 line in zoo.cfg (ids there: 1, 2, 3)"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(cfg.ensemble, None);
        cfg.set_my_id(3).unwrap();
        assert_eq!(cfg.ensemble.as_ref().map(|e| e.my_id), Some(3));

        // extendedTypesEnabled limits ids to 254, as ZooKeeper does at startup.
        let text = "initLimit=5\nsyncLimit=2\nserver.254=zoo1:12888:13888\n\
                    server.255=zoo2:12888:13888\n";
        let mut cfg = parse(text);
        cfg.set_my_id(255).unwrap();
        let mut cfg = parse(&format!("extendedTypesEnabled=true\n{text}"));
        cfg.set_my_id(254).unwrap();
        let err = cfg.set_my_id(255).unwrap_err().to_string();
        assert!(err.contains("larger than 254"), "{err}");

        // Standalone: the id is ignored.
        let mut cfg = parse("server.1=zoo1:12888:13888\n");
        cfg.set_my_id(9).unwrap();
        assert_eq!(cfg.ensemble, None);
    }

    #[test]
    fn my_id_text() {
        for (text, id) in [
            ("1", 1),
            ("2\n", 2),
            ("  3 \r\n", 3),
            ("\t4\t", 4),
            ("5\nanything else\n", 5),
            ("\u{feff}6\n", 6),
            ("9223372036854775807", i64::MAX as u64),
        ] {
            assert_eq!(parse_my_id(text), Ok(id), "{text:?}");
        }
        for (text, reason) in [
            ("", "empty"),
            ("  \n", "empty"),
            ("\n1\n", "empty"),
            ("abc", "'abc' is not a server id"),
            ("0", "'0' is not a server id"),
            ("-1", "'-1' is not a server id"),
            ("+1", "'+1' is not a server id"),
            ("1.0", "'1.0' is not a server id"),
            ("1 2", "'1 2' is not a server id"),
            ("9223372036854775808", "is not a server id"),
        ] {
            let got = parse_my_id(text).unwrap_err();
            assert!(got.contains(reason), "{text:?}: {got}");
        }
    }

    /// A `zoo.cfg` in a fresh temporary directory whose dataDir is that directory.
    fn cfg_file(body: &str, my_id: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zoo.cfg");
        std::fs::write(&path, format!("dataDir={}\n{body}", dir.path().display())).unwrap();
        if let Some(text) = my_id {
            std::fs::write(dir.path().join("myid"), text).unwrap();
        }
        (dir, path)
    }

    fn my_id_err(result: Result<Config, ConfigError>, dir: &Path) -> String {
        match result {
            Err(ConfigError::MyId { path, reason }) => {
                assert_eq!(path, dir.join("myid"));
                reason
            }
            other => panic!("expected a MyId error, got {other:?}"),
        }
    }

    #[test]
    fn load_reads_myid_for_an_ensemble() {
        let (dir, path) = cfg_file(ENSEMBLE3, Some("2\n"));
        let cfg = Config::load(&path).unwrap();
        let e = cfg.ensemble.as_ref().expect("an ensemble");
        assert_eq!(e.my_id, 2);
        assert_eq!(e.servers.len(), 3);
        assert_eq!(e.quorum_size(), 2);
        // parse_file does not read it.
        assert_eq!(Config::parse_file(&path).unwrap().ensemble, None);
        drop(dir);
    }

    #[test]
    fn load_my_id_errors_name_the_file() {
        let (dir, path) = cfg_file(ENSEMBLE3, None);
        let reason = my_id_err(Config::load(&path), dir.path());
        assert!(reason.starts_with("cannot read it: "), "{reason}");
        assert!(reason.contains("3 servers in zoo.cfg"), "{reason}");
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "myid file {}: ",
                dir.path().join("myid").display()
            )),
            "{msg}"
        );

        let (dir, path) = cfg_file(ENSEMBLE3, Some("two\n"));
        let reason = my_id_err(Config::load(&path), dir.path());
        assert!(reason.starts_with("'two' is not a server id"), "{reason}");

        let (dir, path) = cfg_file(ENSEMBLE3, Some(""));
        let reason = my_id_err(Config::load(&path), dir.path());
        assert!(reason.starts_with("empty"), "{reason}");

        let (dir, path) = cfg_file(ENSEMBLE3, Some("7\n"));
        let reason = my_id_err(Config::load(&path), dir.path());
        assert!(reason.contains("no server.7 line"), "{reason}");

        // A directory where the file should be is unreadable too.
        let (dir, path) = cfg_file(ENSEMBLE3, None);
        std::fs::create_dir(dir.path().join("myid")).unwrap();
        let reason = my_id_err(Config::load(&path), dir.path());
        assert!(reason.starts_with("cannot read it: "), "{reason}");
    }

    #[test]
    fn standalone_configs_do_not_read_myid() {
        for body in ["", "server.1=zoo1:12888:13888\n"] {
            // Garbage in myid does not matter: it is not read.
            let (_dir, path) = cfg_file(body, Some("garbage"));
            let cfg = Config::load(&path).unwrap();
            assert_eq!(cfg.ensemble, None);
            let (_dir, path) = cfg_file(body, None);
            assert_eq!(Config::load(&path).unwrap().ensemble, None);
        }
    }

    #[test]
    fn load_my_id_follows_a_changed_data_dir() {
        let (_dir, path) = cfg_file(ENSEMBLE3, Some("1\n"));
        let mut cfg = Config::parse_file(&path).unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("myid"), "3\n").unwrap();
        cfg.data_dir = other.path().to_owned();
        cfg.load_my_id().unwrap();
        assert_eq!(cfg.ensemble.map(|e| e.my_id), Some(3));
    }
}
