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
//!
//! `DigestAuthenticationProvider.superDigest`, the name ZooKeeper itself
//! reads, is accepted as a synonym for `superDigest`.
//!
//! The session-timeout defaults are derived from `tickTime` after the whole
//! file has been read, so `tickTime` may appear after the timeouts.
//!
//! Every other key — ZooKeeper keys Corral does not use yet (`initLimit`,
//! `server.N`, `autopurge.*`, `admin.*`, ...) as well as keys nobody knows —
//! is collected in [`Config::unknown_keys`] so the caller can log it;
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

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
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
    /// Keys present in the file that Corral ignored, in order of first
    /// appearance and without duplicates: ZooKeeper keys Corral does not
    /// use yet as well as unknown ones (see [`is_zookeeper_key`]). The
    /// caller should log them.
    pub unknown_keys: Vec<String>,
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
            unknown_keys: Vec::new(),
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
    /// Parses the text of a `zoo.cfg`. Pure: no file system access, and
    /// paths are not resolved.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut cfg = Config::default();
        // `None` = not given (or -1): derive from tickTime once it is known.
        let mut min_session_timeout = None;
        let mut max_session_timeout = None;

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
        Ok(cfg)
    }

    /// Reads and parses the file at `path`. Relative paths inside it (such
    /// as `dataDir`) are kept as given, not resolved against the file's
    /// directory — ZooKeeper does the same. Parse errors carry the line
    /// number but not the path; the caller knows it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
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

    fn count(&self) -> Result<u32, ConfigError> {
        self.value
            .parse()
            .map_err(|_| self.invalid("not a non-negative whole number (0-4294967295)"))
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
             forceSync=no\n"
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
                unknown_keys: vec![],
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
             clientPort=2181\n\
             #maxClientCnxns=60\n\
             #autopurge.snapRetainCount=3\n\
             autopurge.purgeInterval=1\n\
             server.1=zoo1:2888:3888\n\
             server.2=zoo2:2888:3888;2181\n\
             admin.enableServer=false\n\
             metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n",
        );
        assert_eq!(cfg.tick_time_ms, 2000);
        assert_eq!(cfg.min_session_timeout_ms, 4000);
        assert_eq!(cfg.max_session_timeout_ms, 40000);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/zookeeper"));
        assert_eq!(cfg.max_client_cnxns, 60);
        assert_eq!(cfg.purge_interval_hours, 1);
        assert_eq!(
            cfg.unknown_keys,
            [
                "initLimit",
                "syncLimit",
                "server.1",
                "server.2",
                "admin.enableServer",
                "metricsProvider.className",
            ]
        );
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
        let cfg = parse("server.1=host:2888:3888\nclientPortAddress=::1\n");
        assert_eq!(cfg.unknown_keys, ["server.1"]);
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
            "initLimit=10\nclientport=2182\nserver.1=a:1:2\ninitLimit=11\nfoo.bar: baz\nsyncLimit=1\n",
        );
        assert_eq!(
            cfg.unknown_keys,
            [
                "initLimit",
                "clientport",
                "server.1",
                "foo.bar",
                "syncLimit"
            ]
        );
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
        let cfg = parse("initLimit=not a number\nsyncLimit=maybe\n");
        assert_eq!(cfg.unknown_keys, ["initLimit", "syncLimit"]);
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
        std::fs::write(&path, "clientPort=3181\ndataDir=data\ninitLimit=5\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cfg.client_port, 3181);
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
        assert_eq!(cfg.unknown_keys, ["initLimit"]);
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
}
