//! The shared conformance suite, run against every log implementation and a few FileLog
//! configurations (tiny segments and batches, so rollover, multi-segment reads and
//! cross-segment truncation are exercised by the same checks).

use corral_storage::conformance::Harness;
use corral_storage::{FileLog, FileLogOptions, MemLog};
use tempfile::TempDir;

/// A MemLog whose restart is a simulated power loss.
struct Mem(MemLog);

impl Harness for Mem {
    type Log = MemLog;
    fn log(&mut self) -> &mut MemLog {
        &mut self.0
    }
    fn restart(&mut self) {
        self.0.crash();
    }
}

/// A FileLog in a temporary directory; restart drops it unsynced and reopens.
struct File {
    dir: TempDir,
    options: FileLogOptions,
    log: Option<FileLog>,
}

impl File {
    fn new(options: FileLogOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = FileLog::open(dir.path(), options.clone()).unwrap();
        assert_eq!(report, Default::default());
        File {
            dir,
            options,
            log: Some(log),
        }
    }
}

impl Harness for File {
    type Log = FileLog;
    fn log(&mut self) -> &mut FileLog {
        self.log.as_mut().unwrap()
    }
    fn restart(&mut self) {
        self.log = None;
        let (log, report) = FileLog::open(self.dir.path(), self.options.clone()).unwrap();
        // Nothing was torn: the process stopped, the machine did not.
        assert_eq!(report.truncated, None);
        self.log = Some(log);
    }
}

corral_storage::log_conformance_tests!(mem_log, || Mem(MemLog::new()));

corral_storage::log_conformance_tests!(file_log, || File::new(FileLogOptions {
    preallocate_bytes: 1 << 20,
    ..FileLogOptions::default()
}));

corral_storage::log_conformance_tests!(file_log_tiny_segments, || File::new(FileLogOptions {
    segment_bytes: 2048,
    preallocate_bytes: 4096,
    max_batch_bytes: 300,
    max_unsynced_bytes: 64 << 10,
}));
