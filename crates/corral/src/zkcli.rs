//! `corral cli`: a shell that speaks like ZooKeeper's zkCli.
//!
//! `corral cli -server HOST:PORT CMD ARGS...` runs one command and exits (0, 1 when the
//! command failed, 127 for an unknown command); without a command it reads commands from
//! the terminal, with history and completion of commands and paths. Output goes where
//! zkCli's goes: what a command reads to stdout, "Created ..." and errors to stderr, in
//! zkCli's words (`Node does not exist: /a`, `Insufficient permission : /a` ...), so
//! scripts written around zkCli work with it.

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zookeeper_client as zk;

/// Every command with its usage line, as zkCli prints them.
const USAGE: &[(&str, &str)] = &[
    ("addWatch", "addWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE"),
    ("addauth", "addauth scheme auth"),
    ("close", "close "),
    ("config", "config [-c] [-w] [-s]"),
    ("connect", "connect host:port"),
    ("create", "create [-s] [-e] [-c] [-t ttl] path [data] [acl]"),
    ("delete", "delete [-v version] path"),
    ("deleteall", "deleteall path [-b batch size]"),
    ("get", "get [-s] [-w] path"),
    ("getAcl", "getAcl [-s] path"),
    ("getAllChildrenNumber", "getAllChildrenNumber path"),
    ("getEphemerals", "getEphemerals path"),
    ("history", "history "),
    ("ls", "ls [-s] [-w] [-R] path"),
    ("printwatches", "printwatches on|off"),
    ("quit", "quit "),
    ("redo", "redo cmdno"),
    ("removewatches", "removewatches path [-c|-d|-a] [-l]"),
    ("set", "set [-s] [-v version] path data"),
    ("setAcl", "setAcl [-s] [-v version] [-R] path acl"),
    ("stat", "stat [-w] path"),
    ("sync", "sync path"),
    ("version", "version "),
    ("whoami", "whoami "),
];

/// Why a command failed: what to print, and the exit code of a one-command run.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(cmd: &str) -> Failure {
        let line = USAGE.iter().find(|(c, _)| *c == cmd).map_or(cmd, |(_, u)| u);
        Failure { message: line.to_string(), code: 1 }
    }

    /// A server's error for `path`, in zkCli's words.
    fn keeper(e: zk::Error, path: &str) -> Failure {
        let message = match e {
            zk::Error::NoNode => format!("Node does not exist: {path}"),
            zk::Error::NodeExists => format!("Node already exists: {path}"),
            zk::Error::NotEmpty => format!("Node not empty: {path}"),
            zk::Error::BadVersion => format!("version No is not valid : {path}"),
            zk::Error::NoAuth => format!("Insufficient permission : {path}"),
            zk::Error::InvalidAcl => format!("Acl is not valid : {path}"),
            zk::Error::AuthFailed => format!("Authentication is not valid : {path}"),
            zk::Error::NoChildrenForEphemerals => format!("Ephemerals cannot have children: {path}"),
            e => format!("KeeperErrorCode = {} for {path}", code_name(&e)),
        };
        Failure { message, code: 1 }
    }
}

/// ZooKeeper's name of an error code (`KeeperException.Code`), for the errors zkCli prints
/// generically.
fn code_name(e: &zk::Error) -> String {
    match e {
        zk::Error::Unimplemented => "Unimplemented".into(),
        zk::Error::ConnectionLoss => "ConnectionLoss".into(),
        zk::Error::SessionExpired => "Session expired".into(),
        zk::Error::BadArguments(_) => "BadArguments".into(),
        zk::Error::NoWatcher => "No such watcher".into(),
        zk::Error::NotReadOnly => "NotReadOnly".into(),
        zk::Error::QuotaExceeded => "QuotaExceeded".into(),
        zk::Error::Throttled => "Throttled".into(),
        zk::Error::ReconfigDisabled => "ReconfigDisabled".into(),
        zk::Error::SessionMoved => "Session moved".into(),
        other => format!("{other}"),
    }
}

/// Splits a command line into words; single or double quotes keep spaces in one word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Options (`-s`, `-v 3` ...) and the remaining arguments of a command.
struct Opts {
    flags: Vec<char>,
    values: Vec<(char, String)>,
    args: Vec<String>,
}

impl Opts {
    /// `valued`: the options that take a value.
    fn parse(words: &[String], cmd: &str, known: &str, valued: &str) -> Result<Opts, Failure> {
        let mut o = Opts { flags: Vec::new(), values: Vec::new(), args: Vec::new() };
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.strip_prefix('-').and_then(|f| f.chars().next().filter(|_| f.len() == 1)) {
                Some(f) if valued.contains(f) => {
                    let v = it.next().ok_or_else(|| Failure::usage(cmd))?;
                    o.values.push((f, v.clone()));
                }
                Some(f) if known.contains(f) => o.flags.push(f),
                Some(_) => return Err(Failure::usage(cmd)),
                None => o.args.push(w.clone()),
            }
        }
        Ok(o)
    }

    fn has(&self, f: char) -> bool {
        self.flags.contains(&f)
    }

    fn value(&self, f: char) -> Option<&str> {
        self.values.iter().find(|(k, _)| *k == f).map(|(_, v)| v.as_str())
    }

    fn version(&self, cmd: &str) -> Result<Option<i32>, Failure> {
        self.value('v').map(|v| v.parse().map_err(|_| Failure::usage(cmd))).transpose()
    }
}

/// A date as Java's `Date.toString()` prints it, in UTC: `Sun Nov 22 15:42:13 UTC 2026`.
fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {day:02} {:02}:{:02}:{:02} UTC {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn stat_text(s: &zk::Stat) -> String {
    format!(
        "cZxid = {:#x}\nctime = {}\nmZxid = {:#x}\nmtime = {}\npZxid = {:#x}\ncversion = {}\ndataVersion = {}\n\
         aclVersion = {}\nephemeralOwner = {:#x}\ndataLength = {}\nnumChildren = {}\n",
        s.czxid,
        java_date(s.ctime),
        s.mzxid,
        java_date(s.mtime),
        s.pzxid,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

/// `[a, b]`, as Java prints a list.
fn java_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn perms_text(p: zk::Permission) -> String {
    [(zk::Permission::CREATE, 'c'), (zk::Permission::DELETE, 'd'), (zk::Permission::READ, 'r'), (zk::Permission::WRITE, 'w'), (zk::Permission::ADMIN, 'a')]
        .iter()
        .filter(|(bit, _)| p.has(*bit))
        .map(|(_, c)| *c)
        .collect()
}

/// `scheme:id:perms[,...]`; a digest id holds a colon itself, so perms follow the last one.
fn parse_acls(text: &str) -> Option<Vec<zk::Acl>> {
    text.split(',')
        .map(|one| {
            let (scheme, rest) = one.split_once(':')?;
            let (id, perms) = rest.rsplit_once(':')?;
            let mut p = zk::Permission::NONE;
            for c in perms.chars() {
                p = p | match c {
                    'c' => zk::Permission::CREATE,
                    'd' => zk::Permission::DELETE,
                    'r' => zk::Permission::READ,
                    'w' => zk::Permission::WRITE,
                    'a' => zk::Permission::ADMIN,
                    _ => return None,
                };
            }
            Some(zk::Acl::new(p, zk::AuthId::new(scheme, id)))
        })
        .collect()
}

fn path_arg(o: &Opts, cmd: &str) -> Result<String, Failure> {
    o.args.first().cloned().ok_or_else(|| Failure::usage(cmd))
}

/// The shell: a connection and what the user has done in it.
struct Shell {
    client: zk::Client,
    host: String,
    history: Vec<String>,
    interactive: bool,
    print_watches: Arc<Mutex<bool>>,
    /// Persistent watches added with addWatch, by path; dropping one stops its printer.
    watches: Vec<(String, tokio::task::JoinHandle<()>)>,
}

impl Shell {
    fn out(&self, text: &str) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }

    /// Prints a one-shot watch's event when it fires (interactive shells only).
    fn print_when_fired(&self, w: zk::OneshotWatcher) {
        if !self.interactive {
            return;
        }
        let on = self.print_watches.clone();
        tokio::spawn(async move {
            let e = w.changed().await;
            if *on.lock().unwrap() {
                print_event(&e);
            }
        });
    }

    /// Runs one command line; `Ok(false)` means quit.
    async fn run(&mut self, words: &[String]) -> Result<bool, Failure> {
        let Some((cmd, rest)) = words.split_first() else { return Ok(true) };
        let cmd = cmd.as_str();
        let c = &self.client;
        match cmd {
            "ls" => {
                let o = Opts::parse(rest, cmd, "swR", "")?;
                let path = path_arg(&o, cmd)?;
                if o.has('R') {
                    // As zkCli: the node, then all its children, then each child's subtree
                    // in turn; a node deleted meanwhile is skipped.
                    c.check_stat(&path).await.map_err(|e| Failure::keeper(e, &path))?.ok_or_else(|| Failure::keeper(zk::Error::NoNode, &path))?;
                    self.out(&format!("{path}\n"));
                    let mut stack = vec![path.clone()];
                    while let Some(p) = stack.pop() {
                        let mut kids = match c.list_children(&p).await {
                            Ok(kids) => kids,
                            Err(zk::Error::NoNode) => continue,
                            Err(e) => return Err(Failure::keeper(e, &p)),
                        };
                        kids.sort();
                        let prefix = if p == "/" { String::new() } else { p.clone() };
                        let kids: Vec<String> = kids.iter().map(|k| format!("{prefix}/{k}")).collect();
                        self.out(&kids.iter().map(|k| format!("{k}\n")).collect::<String>());
                        stack.extend(kids.into_iter().rev());
                    }
                    return Ok(true);
                }
                let (kids, stat) = if o.has('w') {
                    let (kids, stat, w) = c.get_and_watch_children(&path).await.map_err(|e| Failure::keeper(e, &path))?;
                    self.print_when_fired(w);
                    (kids, stat)
                } else {
                    c.get_children(&path).await.map_err(|e| Failure::keeper(e, &path))?
                };
                let mut text = java_list(&kids) + "\n";
                if o.has('s') {
                    text.push_str(&stat_text(&stat));
                }
                self.out(&text);
            }
            "get" => {
                let o = Opts::parse(rest, cmd, "sw", "")?;
                let path = path_arg(&o, cmd)?;
                let (data, stat) = if o.has('w') {
                    let (d, s, w) = c.get_and_watch_data(&path).await.map_err(|e| Failure::keeper(e, &path))?;
                    self.print_when_fired(w);
                    (d, s)
                } else {
                    c.get_data(&path).await.map_err(|e| Failure::keeper(e, &path))?
                };
                let mut text = String::from_utf8_lossy(&data).into_owned() + "\n";
                if o.has('s') {
                    text.push_str(&stat_text(&stat));
                }
                self.out(&text);
            }
            "stat" => {
                let o = Opts::parse(rest, cmd, "w", "")?;
                let path = path_arg(&o, cmd)?;
                let stat = if o.has('w') {
                    let (s, w) = c.check_and_watch_stat(&path).await.map_err(|e| Failure::keeper(e, &path))?;
                    self.print_when_fired(w);
                    s
                } else {
                    c.check_stat(&path).await.map_err(|e| Failure::keeper(e, &path))?
                };
                let stat = stat.ok_or_else(|| Failure::keeper(zk::Error::NoNode, &path))?;
                self.out(&stat_text(&stat));
            }
            "set" => {
                let o = Opts::parse(rest, cmd, "s", "v")?;
                let [path, data] = &o.args[..] else { return Err(Failure::usage(cmd)) };
                let stat =
                    c.set_data(path, data.as_bytes(), o.version(cmd)?).await.map_err(|e| Failure::keeper(e, path))?;
                if o.has('s') {
                    self.out(&stat_text(&stat));
                }
            }
            "create" => {
                let o = Opts::parse(rest, cmd, "sec", "t")?;
                let (path, data, acl) = match &o.args[..] {
                    [p] => (p, "", None),
                    [p, d] => (p, d.as_str(), None),
                    [p, d, a] => (p, d.as_str(), Some(a)),
                    _ => return Err(Failure::usage(cmd)),
                };
                let acls = match acl {
                    Some(a) => parse_acls(a).ok_or_else(|| Failure { message: format!("Acl is not valid : {path}"), code: 1 })?,
                    None => vec![zk::Acl::new(zk::Permission::ALL, zk::AuthId::new("world", "anyone"))],
                };
                let mode = match (o.has('e'), o.has('s'), o.has('c')) {
                    (_, _, true) if o.has('e') || o.has('s') => return Err(Failure::usage(cmd)),
                    (_, _, true) => zk::CreateMode::Container,
                    (true, true, _) => zk::CreateMode::EphemeralSequential,
                    (true, false, _) => zk::CreateMode::Ephemeral,
                    (false, true, _) => zk::CreateMode::PersistentSequential,
                    (false, false, _) => zk::CreateMode::Persistent,
                };
                let mut options = mode.with_acls(zk::Acls::new(&acls));
                if let Some(t) = o.value('t') {
                    let ms: u64 = t.parse().map_err(|_| Failure::usage(cmd))?;
                    options = options.with_ttl(Duration::from_millis(ms));
                }
                let (_, seq) = c.create(path, data.as_bytes(), &options).await.map_err(|e| Failure::keeper(e, path))?;
                let created = if mode == zk::CreateMode::PersistentSequential || mode == zk::CreateMode::EphemeralSequential {
                    format!("{path}{seq}")
                } else {
                    path.clone()
                };
                eprintln!("Created {created}");
            }
            "delete" => {
                let o = Opts::parse(rest, cmd, "", "v")?;
                let path = path_arg(&o, cmd)?;
                c.delete(&path, o.version(cmd)?).await.map_err(|e| Failure::keeper(e, &path))?;
            }
            "deleteall" => {
                let o = Opts::parse(rest, cmd, "", "b")?;
                let path = path_arg(&o, cmd)?;
                // Children first, deepest first.
                let mut order = Vec::new();
                let mut stack = vec![path.clone()];
                while let Some(p) = stack.pop() {
                    let kids = match c.list_children(&p).await {
                        Ok(k) => k,
                        Err(zk::Error::NoNode) if p != path => continue,
                        Err(e) => return Err(Failure::keeper(e, &p)),
                    };
                    let prefix = if p == "/" { String::new() } else { p.clone() };
                    stack.extend(kids.iter().map(|k| format!("{prefix}/{k}")));
                    order.push(p);
                }
                for p in order.iter().rev() {
                    match c.delete(p, None).await {
                        Ok(()) | Err(zk::Error::NoNode) => {}
                        Err(e) => return Err(Failure::keeper(e, p)),
                    }
                }
            }
            "getAcl" => {
                let o = Opts::parse(rest, cmd, "s", "")?;
                let path = path_arg(&o, cmd)?;
                let (acls, stat) = c.get_acl(&path).await.map_err(|e| Failure::keeper(e, &path))?;
                let mut text: String =
                    acls.iter().map(|a| format!("'{},'{}\n: {}\n", a.scheme(), a.id(), perms_text(a.permission()))).collect();
                if o.has('s') {
                    text.push_str(&stat_text(&stat));
                }
                self.out(&text);
            }
            "setAcl" => {
                let o = Opts::parse(rest, cmd, "sR", "v")?;
                let [path, acl] = &o.args[..] else { return Err(Failure::usage(cmd)) };
                let acls = parse_acls(acl).ok_or_else(|| Failure { message: format!("Acl is not valid : {path}"), code: 1 })?;
                let version = o.version(cmd)?;
                let mut paths = vec![path.clone()];
                if o.has('R') {
                    let mut stack = vec![path.clone()];
                    while let Some(p) = stack.pop() {
                        let kids = c.list_children(&p).await.map_err(|e| Failure::keeper(e, &p))?;
                        let prefix = if p == "/" { String::new() } else { p.clone() };
                        for k in kids {
                            let child = format!("{prefix}/{k}");
                            stack.push(child.clone());
                            paths.push(child);
                        }
                    }
                }
                let mut last = None;
                for p in &paths {
                    let v = if p == path { version } else { None };
                    last = Some(c.set_acl(p, &acls, v).await.map_err(|e| Failure::keeper(e, p))?);
                }
                if let (true, Some(stat)) = (o.has('s'), last) {
                    self.out(&stat_text(&stat));
                }
            }
            "addauth" => {
                let [scheme, auth] = rest else { return Err(Failure::usage(cmd)) };
                c.auth(scheme, auth.as_bytes()).await.map_err(|e| Failure { message: format!("{e}"), code: 1 })?;
            }
            "sync" => {
                let [path] = rest else { return Err(Failure::usage(cmd)) };
                c.sync(path).await.map_err(|e| Failure::keeper(e, path))?;
                self.out("Sync is OK\n");
            }
            "getEphemerals" => {
                let path = rest.first().map_or("/", String::as_str);
                let mut list = c.list_ephemerals(path).await.map_err(|e| Failure::keeper(e, path))?;
                list.sort();
                self.out(&(java_list(&list) + "\n"));
            }
            "getAllChildrenNumber" => {
                let [path] = rest else { return Err(Failure::usage(cmd)) };
                let n = c.count_descendants_number(path).await.map_err(|e| Failure::keeper(e, path))?;
                self.out(&format!("{n}\n"));
            }
            "addWatch" => {
                let o = Opts::parse(rest, cmd, "", "m")?;
                let path = path_arg(&o, cmd)?;
                let mode = match o.value('m').map(str::to_ascii_uppercase).as_deref() {
                    None | Some("PERSISTENT_RECURSIVE") => zk::AddWatchMode::PersistentRecursive,
                    Some("PERSISTENT") => zk::AddWatchMode::Persistent,
                    Some(_) => return Err(Failure::usage(cmd)),
                };
                let mut w = c.watch(&path, mode).await.map_err(|e| Failure::keeper(e, &path))?;
                if self.interactive {
                    let on = self.print_watches.clone();
                    let printer = tokio::spawn(async move {
                        loop {
                            let e = w.changed().await;
                            if *on.lock().unwrap() {
                                print_event(&e);
                            }
                            if e.event_type == zk::EventType::Session {
                                break;
                            }
                        }
                    });
                    self.watches.push((path, printer));
                }
            }
            "removewatches" => {
                let o = Opts::parse(rest, cmd, "cdal", "")?;
                let path = path_arg(&o, cmd)?;
                let before = self.watches.len();
                self.watches.retain(|(p, printer)| {
                    let keep = *p != path;
                    if !keep {
                        printer.abort();
                    }
                    keep
                });
                if self.watches.len() == before {
                    return Err(Failure::keeper(zk::Error::NoWatcher, &path));
                }
            }
            "whoami" => {
                let users = c.list_auth_users().await.map_err(|e| Failure { message: format!("{e}"), code: 1 })?;
                let mut text = String::from("Auth scheme: User\n");
                for u in users {
                    text.push_str(&format!("{}: {}\n", u.scheme(), u.user()));
                }
                self.out(&text);
            }
            "config" => {
                let o = Opts::parse(rest, cmd, "cws", "")?;
                let (data, stat) = c.get_config().await.map_err(|e| Failure::keeper(e, "/zookeeper/config"))?;
                let mut text = String::from_utf8_lossy(&data).into_owned();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                if o.has('s') {
                    text.push_str(&stat_text(&stat));
                }
                self.out(&text);
            }
            "history" => {
                let start = self.history.len().saturating_sub(11);
                let text: String =
                    self.history.iter().enumerate().skip(start).map(|(i, l)| format!("{i} - {l}\n")).collect();
                self.out(&text);
            }
            "printwatches" => match rest {
                [] => self.out(&format!("printwatches is {}\n", if *self.print_watches.lock().unwrap() { "on" } else { "off" })),
                [v] if v == "on" || v == "off" => *self.print_watches.lock().unwrap() = v == "on",
                _ => return Err(Failure::usage(cmd)),
            },
            "version" => self.out(&format!("ZooKeeper CLI version: {}\n", corral_server_version())),
            "connect" => {
                let [host] = rest else { return Err(Failure::usage(cmd)) };
                self.client = connect(host).await.map_err(|e| Failure { message: e, code: 1 })?;
                self.host = host.clone();
            }
            "quit" | "close" => return Ok(false),
            _ => {
                let mut message = String::from("ZooKeeper -server host:port -client-configuration properties-file cmd args\n");
                for (_, u) in USAGE {
                    message.push_str(&format!("\t{u}\n"));
                }
                message.push_str(&format!("Command not found: Command not found {cmd}"));
                return Err(Failure { message, code: 127 });
            }
        }
        Ok(true)
    }
}

fn corral_server_version() -> String {
    format!("3.9.2-corral-{}, built on corral", env!("CARGO_PKG_VERSION"))
}

fn print_event(e: &zk::WatchedEvent) {
    let state = match e.session_state {
        zk::SessionState::SyncConnected => "SyncConnected".to_string(),
        other => format!("{other:?}"),
    };
    let kind = match e.event_type {
        zk::EventType::NodeCreated => "NodeCreated",
        zk::EventType::NodeDeleted => "NodeDeleted",
        zk::EventType::NodeDataChanged => "NodeDataChanged",
        zk::EventType::NodeChildrenChanged => "NodeChildrenChanged",
        _ => "None",
    };
    println!("\nWATCHER::\n\nWatchedEvent state:{state} type:{kind} path:{}", e.path);
}

async fn connect(host: &str) -> Result<zk::Client, String> {
    let connector = zk::Client::connector().with_session_timeout(Duration::from_secs(30));
    match tokio::time::timeout(Duration::from_secs(30), connector.connect(host)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to {host}: {e}")),
        Err(_) => Err(format!("cannot connect to {host}: timed out")),
    }
}

/// Completion of command names (first word) and of znode paths (later words).
struct Completion {
    client: zk::Client,
    rt: tokio::runtime::Handle,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &head[start..];
        let pair = |s: String| Pair { display: s.clone(), replacement: s };
        if start == 0 {
            let names = USAGE.iter().map(|(c, _)| *c).filter(|c| c.starts_with(word)).map(|c| pair(c.to_string() + " "));
            return Ok((0, names.collect()));
        }
        if !word.starts_with('/') {
            return Ok((start, Vec::new()));
        }
        let (dir, prefix) = word.rsplit_once('/').expect("starts with /");
        let parent = if dir.is_empty() { "/" } else { dir };
        let client = self.client.clone();
        let parent_owned = parent.to_string();
        let kids = std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(async move { client.list_children(&parent_owned).await.unwrap_or_default() }))
                .join()
                .unwrap_or_default()
        });
        let mut found: Vec<Pair> =
            kids.into_iter().filter(|k| k.starts_with(prefix)).map(|k| pair(format!("{dir}/{k}"))).collect();
        found.sort_by(|a, b| a.replacement.cmp(&b.replacement));
        Ok((start, found))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// `corral cli [-server HOST:PORT] [CMD ARGS...]`.
pub fn main(args: Vec<String>) -> ExitCode {
    let mut host = "localhost:2181".to_string();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-server" | "--server" => match it.next() {
                Some(h) => host = h,
                None => {
                    eprintln!("-server needs host:port");
                    return ExitCode::from(1);
                }
            },
            "-timeout" | "-r" | "-waitforconnection" if rest.is_empty() => {
                if a == "-timeout" {
                    it.next();
                }
            }
            _ => {
                rest.push(a);
                rest.extend(it.by_ref());
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let client = match rt.block_on(connect(&host)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let interactive = rest.is_empty();
    let mut shell =
        Shell { client, host, history: Vec::new(), interactive, print_watches: Arc::new(Mutex::new(true)), watches: Vec::new() };
    if !interactive {
        shell.history.push(rest.join(" "));
        let code = match rt.block_on(shell.run(&rest)) {
            Ok(_) => 0,
            Err(f) => {
                eprintln!("{}", f.message);
                f.code
            }
        };
        rt.block_on(close(shell));
        return ExitCode::from(code);
    }
    let mut last_code = 0u8;
    let mut editor: Editor<Completion, rustyline::history::DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot read from the terminal: {e}");
            return ExitCode::from(1);
        }
    };
    editor.set_helper(Some(Completion { client: shell.client.clone(), rt: rt.handle().clone() }));
    let history_file = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".corral_cli_history"));
    if let Some(f) = &history_file {
        let _ = editor.load_history(f);
    }
    loop {
        let prompt = format!("[zk: {}(CONNECTED) {}] ", shell.host, shell.history.len());
        let line = match editor.readline(&prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(_) => break,
        };
        let mut w = words(&line);
        if w.is_empty() {
            continue;
        }
        if w[0] == "redo" {
            match w.get(1).and_then(|n| n.parse::<usize>().ok()).and_then(|n| shell.history.get(n)) {
                Some(l) => w = words(l),
                None => {
                    eprintln!("Command index out of range");
                    continue;
                }
            }
        }
        let _ = editor.add_history_entry(line.as_str());
        shell.history.push(w.join(" "));
        match rt.block_on(shell.run(&w)) {
            Ok(true) => last_code = 0,
            Ok(false) => break,
            Err(f) => {
                eprintln!("{}", f.message);
                last_code = f.code;
            }
        }
        if let Some(Completion { client, .. }) = editor.helper_mut() {
            *client = shell.client.clone();
        }
    }
    if let Some(f) = &history_file {
        let _ = editor.save_history(f);
    }
    drop(editor);
    rt.block_on(close(shell));
    // As zkCli: the status of the last command run.
    ExitCode::from(last_code)
}

/// Ends the session, as zkCli does on its way out (its ephemeral nodes go at once): the
/// client sends closeSession once its last handle is dropped; wait for that to happen.
async fn close(shell: Shell) {
    let mut state = shell.client.state_watcher();
    for (_, printer) in &shell.watches {
        printer.abort();
    }
    drop(shell);
    let closed = async {
        while !matches!(state.changed().await, zk::SessionState::Closed | zk::SessionState::Expired | zk::SessionState::AuthFailed) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), closed).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_java_prints_them_in_utc() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_362_133_000), "Sun Nov 22 15:42:13 UTC 2026");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }

    #[test]
    fn words_keep_quoted_spaces() {
        assert_eq!(words(" create /a 'hello world' "), ["create", "/a", "hello world"]);
        assert_eq!(words("set /a \"x y\""), ["set", "/a", "x y"]);
        assert_eq!(words("set /a ''"), ["set", "/a", ""]);
    }

    #[test]
    fn acls_parse_as_zkcli_reads_them() {
        let a = parse_acls("world:anyone:r,digest:bob:abc=:cdrwa").unwrap();
        assert_eq!((a[0].scheme(), a[0].id(), perms_text(a[0].permission())), ("world", "anyone", "r".to_string()));
        assert_eq!((a[1].scheme(), a[1].id(), perms_text(a[1].permission())), ("digest", "bob:abc=", "cdrwa".to_string()));
        assert!(parse_acls("world:anyone:x").is_none());
        assert!(parse_acls("nonsense").is_none());
    }
}
