//! The core's own tokio runtime: built when the first client is created, shut down (threads
//! joined) when the last one is dropped, so C programs under valgrind and Mono processes exit
//! cleanly (TOOLCHAIN §1, §5). Public async fns only await channels, so any executor can poll them.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

struct Shared {
    runtime: Option<Runtime>,
    users: usize,
    /// The process that built the runtime: after `fork()` the child has its memory but none of
    /// its threads.
    pid: u32,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    runtime: None,
    users: 0,
    pid: 0,
});

/// Holds the runtime alive; dropping the last guard shuts it down.
#[derive(Debug)]
pub struct RuntimeGuard {
    handle: Handle,
    pid: u32,
}

impl RuntimeGuard {
    pub fn acquire() -> std::io::Result<RuntimeGuard> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if shared.runtime.is_some() && shared.pid != pid {
            // A forked child inherited a runtime whose threads stayed in the parent: it can
            // neither run nor be shut down. Leak it and build our own.
            std::mem::forget(shared.runtime.take());
            shared.users = 0;
        }
        if shared.runtime.is_none() {
            let threads = std::thread::available_parallelism()
                .map(|n| n.get().min(2))
                .unwrap_or(1);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .max_blocking_threads(4)
                .thread_name("edgemodule-rt")
                .enable_all()
                .build()?;
            shared.runtime = Some(rt);
            shared.pid = pid;
        }
        shared.users += 1;
        let handle = shared.runtime.as_ref().map(|r| r.handle().clone());
        Ok(RuntimeGuard {
            handle: handle.expect("runtime just built"),
            pid,
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return; // a guard inherited through fork(): its runtime is not ours to stop
        }
        let runtime = {
            let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            shared.users = shared.users.saturating_sub(1);
            if shared.users == 0 {
                shared.runtime.take()
            } else {
                None
            }
        };
        if let Some(rt) = runtime {
            // A runtime cannot be shut down from one of its own threads (or any async
            // context): hand it to a plain thread then.
            if Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("edgemodule-shutdown".into())
                    .spawn(move || rt.shutdown_timeout(Duration::from_secs(2)));
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

/// Number of live runtime users (for tests).
pub fn users() -> usize {
    SHARED.lock().unwrap_or_else(|p| p.into_inner()).users
}
