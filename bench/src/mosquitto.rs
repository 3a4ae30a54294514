//! A private mosquitto for the ceiling measurement: plain TCP on a free 127.0.0.1 port, no
//! persistence, no queue or inflight limits (so the broker never throttles the clients).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, BenchResult};

pub struct Mosquitto {
    child: Child,
    pub port: u16,
}

/// The mosquitto binary: `$MOSQUITTO`, else `mosquitto` on PATH, else Debian's /usr/sbin one
/// (/usr/sbin is often missing from a non-root PATH).
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mosquitto").is_file()))
        .unwrap_or(false);
    if on_path {
        PathBuf::from("mosquitto")
    } else {
        PathBuf::from("/usr/sbin/mosquitto")
    }
}

/// Whether we run as root: mosquitto then drops to user `mosquitto` unless told `user root`.
fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

pub fn config(port: u16, as_root: bool) -> String {
    let mut c = format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence false\n\
         max_queued_messages 0\n\
         max_inflight_messages 0\n\
         log_type error\n"
    );
    if as_root {
        c.push_str("user root\n");
    }
    c
}

impl Mosquitto {
    /// Starts mosquitto with its config and log in `dir`; returns once it accepts connections.
    pub fn start(dir: &Path) -> BenchResult<Mosquitto> {
        let port = free_port()?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, config(port, is_root()))?;
        let log = std::fs::File::create(dir.join("mosquitto.log"))?;
        let bin = binary();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {} ({e}); install mosquitto", bin.display()))?;
        let mut m = Mosquitto { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(m);
            }
            if let Some(status) = m.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
                return Err(format!("mosquitto exited ({status}): {}", log.trim()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("mosquitto did not listen on port {port} within 10 s").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_no_limits_and_runs_as_root_only_when_root() {
        let c = config(1883, false);
        assert_eq!(
            c,
            "listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 0\nlog_type error\n"
        );
        assert!(config(1883, true).ends_with("user root\n"));
    }
}
