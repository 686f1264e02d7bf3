//! `corral cli`, the zkCli-compatible shell: every command once non-interactively (output,
//! stream and exit code as zkCli's), and a few interactively under a pseudo-terminal.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// Runs `corral cli -server ADDR ARGS...`: (exit code, stdout, stderr).
fn cli(server: &Server, args: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["cli", "-server", &server.addr()])
        .args(args.split(' ').filter(|a| !a.is_empty()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(server: &Server, args: &str) -> String {
    let (code, out, err) = cli(server, args);
    assert_eq!(code, 0, "{args}: {err}");
    out
}

fn fails(server: &Server, args: &str, code: i32, message: &str) {
    let (c, out, err) = cli(server, args);
    assert_eq!(c, code, "{args}: {out} {err}");
    assert!(err.contains(message), "{args}: {err:?} lacks {message:?}");
}

fn stat_lines(text: &str) -> Vec<&str> {
    text.lines().map(|l| l.split(" = ").next().unwrap()).collect()
}

const STAT: [&str; 11] = [
    "cZxid", "ctime", "mZxid", "mtime", "pZxid", "cversion", "dataVersion", "aclVersion", "ephemeralOwner", "dataLength", "numChildren",
];

#[test]
fn every_command_once_as_zkcli_answers_it() {
    let s = Server::start_with(&["extendedTypesEnabled=true"]);
    // create: "Created" goes to stderr, as zkCli's does.
    let (code, out, err) = cli(&s, "create /a hello");
    assert_eq!((code, out.as_str(), err.trim()), (0, "", "Created /a"));
    fails(&s, "create /a again", 1, "Node already exists: /a");
    let (_, _, err) = cli(&s, "create -s /a/q- x");
    assert_eq!(err.trim(), "Created /a/q-0000000000");
    let (_, _, err) = cli(&s, "create -e /a/e x");
    assert_eq!(err.trim(), "Created /a/e", "ephemeral: gone with the cli's session");
    ok(&s, "create -c /box");
    ok(&s, "create -t 60000 /ttl x");
    // (Its stat shows ephemeralOwner 0, as ZooKeeper's does for TTL nodes; that -t asks
    // for a TTL node shows on a server without extended types below.)
    ok(&s, "create /acl x digest:bob:XyZ=:cdrwa");

    assert_eq!(ok(&s, "ls /"), "[a, acl, box, ttl, zookeeper]\n");
    assert_eq!(ok(&s, "ls /a"), "[q-0000000000]\n");
    let ls = ok(&s, "ls -s /a");
    assert_eq!(ls.lines().next(), Some("[q-0000000000]"));
    assert_eq!(stat_lines(ls.split_once('\n').unwrap().1), STAT);
    assert_eq!(ok(&s, "ls -R /a"), "/a\n/a/q-0000000000\n");
    assert_eq!(ok(&s, "get /a"), "hello\n");
    let get = ok(&s, "get -s /a");
    assert!(get.starts_with("hello\ncZxid = 0x"), "{get}");
    assert!(get.contains("\ndataLength = 5\nnumChildren = 1\n"), "{get}");
    assert!(get.contains(" UTC "), "Java's date format: {get}");
    assert_eq!(stat_lines(&ok(&s, "stat /a")), STAT);
    fails(&s, "stat /nope", 1, "Node does not exist: /nope");
    fails(&s, "get /nope", 1, "Node does not exist: /nope");

    assert_eq!(ok(&s, "set /a world"), "");
    assert!(ok(&s, "set -s /a again").contains("dataVersion = 2"));
    fails(&s, "set -v 7 /a x", 1, "version No is not valid : /a");
    fails(&s, "delete /a", 1, "Node not empty: /a");
    fails(&s, "delete -v 9 /ttl", 1, "version No is not valid : /ttl");
    ok(&s, "delete -v 0 /ttl");

    assert_eq!(ok(&s, "getAcl /a"), "'world,'anyone\n: cdrwa\n");
    assert_eq!(ok(&s, "getAcl /zookeeper/config"), "'world,'anyone\n: r\n");
    ok(&s, "setAcl /a world:anyone:ra");
    assert_eq!(ok(&s, "getAcl /a"), "'world,'anyone\n: ra\n");
    fails(&s, "set /a x", 1, "Insufficient permission : /a");
    fails(&s, "get /acl", 1, "Insufficient permission : /acl");
    ok(&s, "setAcl -R /a world:anyone:cdrwa");
    assert_eq!(ok(&s, "getAcl /a/q-0000000000"), "'world,'anyone\n: cdrwa\n");
    fails(&s, "setAcl /a world:anyone:q", 1, "Acl is not valid : /a");

    assert_eq!(ok(&s, "getAllChildrenNumber /a"), "1\n");
    // a, a/q-0000000000, acl, box, zookeeper and its quota and config.
    assert_eq!(ok(&s, "getAllChildrenNumber /"), "7\n");
    assert_eq!(ok(&s, "sync /a"), "Sync is OK\n");
    assert_eq!(ok(&s, "getEphemerals /"), "[]\n", "a new session owns none");
    assert_eq!(ok(&s, "whoami"), "Auth scheme: User\nip: 127.0.0.1\n");
    assert_eq!(ok(&s, "addauth digest bob:pw"), "");
    assert_eq!(ok(&s, "config"), "");
    assert!(ok(&s, "config -s").contains("cZxid = 0x0"));
    assert_eq!(ok(&s, "addWatch -m PERSISTENT /a"), "");
    fails(&s, "addWatch -m SOMETIMES /a", 1, "addWatch [-m mode] path");
    fails(&s, "removewatches /a", 1, "KeeperErrorCode = No such watcher for /a");
    assert_eq!(ok(&s, "history"), "0 - history\n");
    assert!(ok(&s, "version").starts_with("ZooKeeper CLI version: "));
    assert_eq!(ok(&s, "printwatches off"), "");
    ok(&s, "quit");

    ok(&s, "deleteall /a");
    fails(&s, "ls /a", 1, "Node does not exist: /a");
    // Usage errors print the command's usage; unknown commands the whole list (127).
    fails(&s, "ls", 1, "ls [-s] [-w] [-R] path");
    fails(&s, "get -x /a", 1, "get [-s] [-w] path");
    fails(&s, "bogus", 127, "Command not found: Command not found bogus");
    let (_, _, err) = cli(&s, "bogus");
    assert!(err.contains("\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]\n"), "{err}");
}

/// Runs the shell under a pseudo-terminal (`script`), feeding `input`; its transcript.
fn under_a_pty(server: &Server, input: &[&str]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("`script` (util-linux) is missing: skipping the interactive test");
        return None;
    }
    let home = tempfile::tempdir().unwrap();
    let cmd = format!("{} cli -server {}", env!("CARGO_BIN_EXE_corral"), server.addr());
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in input {
        std::thread::sleep(std::time::Duration::from_millis(400));
        use std::io::Write;
        stdin.write_all(line.as_bytes()).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(400));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let history = std::fs::read_to_string(home.path().join(".corral_cli_history")).unwrap_or_default();
    Some(format!("{}\n--history--\n{history}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn interactive_prompt_completion_watches_and_history() {
    let s = Server::start();
    ok(&s, "create /watched x");
    let Some(t) = under_a_pty(
        &s,
        &["ls /\r", "get -w /watched\r", "set /watched y\r", "ge\t/wa\t\r", "history\r", "quit\r"],
    ) else {
        return;
    };
    assert!(t.contains("[zk: 127.0.0.1:"), "a zkCli prompt: {t}");
    assert!(t.contains("(CONNECTED) 0]"), "{t}");
    assert!(t.contains("[watched, zookeeper]"), "{t}");
    // The watch set by `get -w` fires on the set, printed as zkCli prints it.
    assert!(t.contains("WatchedEvent state:SyncConnected type:NodeDataChanged path:/watched"), "{t}");
    // Tab completed the command and the path.
    assert!(t.contains("get /watched"), "{t}");
    assert!(t.contains("3 - get /watched"), "history lists the completed command: {t}");
    assert!(t.contains("--history--") && t.contains("set /watched y"), "history is saved: {t}");
}

/// `ls -R` walks as zkCli's does: a node, all its children, then each child's subtree.
#[test]
fn ls_recursive_lists_children_before_grandchildren() {
    let s = Server::start();
    for p in ["/r", "/r/b", "/r/b/x", "/r/c", "/r/c/y", "/r/c/y/z"] {
        ok(&s, &format!("create {p} v"));
    }
    assert_eq!(ok(&s, "ls -R /r"), "/r\n/r/b\n/r/c\n/r/b/x\n/r/c/y\n/r/c/y/z\n");
    fails(&s, "ls -R /nope", 1, "Node does not exist: /nope");
}

/// Commands piped into the shell: it exits with the status of the last one, as zkCli.
#[test]
fn piped_commands_exit_with_the_last_status() {
    let s = Server::start();
    let run = |input: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["cli", "-server", &s.addr()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run("create /p x\nget /nope\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Node does not exist: /nope"), "{err}");
    assert_eq!(run("get /nope\nget /p\n").0, Some(0));
    assert_eq!(run("nosuchcommand\n").0, Some(127));
    // This server has no extended types: -t asks for a TTL node, which it refuses.
    let (code, err) = run("create -t 60000 /t x\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Unimplemented"), "{err}");
    // removewatches takes away a watch this shell added.
    let (code, err) = run("addWatch -m PERSISTENT /p\nremovewatches /p\n");
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run("addWatch -m PERSISTENT /p\nremovewatches /p\nremovewatches /p\n");
    assert_eq!(code, Some(1), "the second removal finds nothing: {err}");
    assert!(err.contains("No such watcher for /p"), "{err}");
}
