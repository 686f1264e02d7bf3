//! What one step of a write costs on this machine, with nothing of Corral in the way: a
//! hand-off between two threads, a message over loopback TCP, and a small append made
//! durable. A write through an ensemble is a chain of such steps, so these figures are the
//! floor under any server's latency here (see docs/benchmarks.md).
//!
//! `cargo run --release --example floor [DIR]` (DIR: where to test fdatasync, default the
//! system temp dir; use the disk the data dir is on).

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::time::Instant;

const ROUNDS: u32 = 20_000;

fn per_us(started: Instant, n: u32) -> f64 {
    started.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).map_or_else(std::env::temp_dir, Into::into);

    // Ping-pong between two threads over channels: each way wakes a sleeping thread.
    let (to_b, at_b) = std::sync::mpsc::channel::<u32>();
    let (to_a, at_a) = std::sync::mpsc::channel::<u32>();
    let echo = std::thread::spawn(move || {
        for v in at_b {
            if to_a.send(v).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    for i in 0..ROUNDS {
        to_b.send(i).expect("echo thread");
        at_a.recv().expect("echo thread");
    }
    let handoff = per_us(started, 2 * ROUNDS);
    drop(to_b);
    echo.join().expect("echo thread");

    // Ping-pong of 64-byte messages over loopback TCP between two threads.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    let started = Instant::now();
    for _ in 0..ROUNDS {
        c.write_all(&buf)?;
        c.read_exact(&mut buf)?;
    }
    let message = per_us(started, 2 * ROUNDS);
    drop(c);
    echo.join().expect("echo thread")?;

    // A 230-byte record (a create of 100 bytes, framed) appended to a preallocated file and
    // made durable, as a log does it.
    let path = dir.join(format!("corral-floor-{}", std::process::id()));
    let f = std::fs::OpenOptions::new().create_new(true).read(true).write(true).open(&path)?;
    let syncs = 1000;
    f.set_len(u64::from(syncs) * 230)?;
    f.sync_all()?;
    let record = [7u8; 230];
    let started = Instant::now();
    for i in 0..syncs {
        f.write_all_at(&record, u64::from(i) * 230)?;
        f.sync_data()?;
    }
    let fsync = per_us(started, syncs);
    std::fs::remove_file(&path)?;

    println!("thread hand-off, one way:         {handoff:7.1} us");
    println!("loopback TCP message, one way:    {message:7.1} us");
    println!("230-byte append + fdatasync:      {fsync:7.1} us  ({})", dir.display());
    let chain = 6.0 * message + 2.0 * handoff + fsync;
    println!("create via a follower (6 messages, 2 hand-offs, 1 fdatasync): {chain:.0} us");
    Ok(())
}
