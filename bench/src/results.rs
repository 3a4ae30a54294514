//! bench/RESULTS.md: one dated row per run, appended.

use std::io::Write as _;
use std::path::Path;

use crate::BenchResult;

/// Figures of one run, in messages per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub date: String,
    pub arch: String,
    pub nproc: usize,
    pub messages: usize,
    pub mosquitto_raw: f64,
    pub devhub_raw: f64,
    pub devhub_edgemodule: f64,
}

impl Row {
    /// edgemodule + devhub against the mosquitto + raw client ceiling.
    pub fn ours_vs_ceiling(&self) -> f64 {
        ratio(self.devhub_edgemodule, self.mosquitto_raw)
    }
    /// devhub's routing against mosquitto, both with raw clients.
    pub fn devhub_vs_mosquitto(&self) -> f64 {
        ratio(self.devhub_raw, self.mosquitto_raw)
    }

    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |\n",
            self.date,
            self.arch,
            self.nproc,
            self.messages,
            self.mosquitto_raw,
            self.devhub_raw,
            self.devhub_edgemodule,
            self.ours_vs_ceiling(),
            self.devhub_vs_mosquitto()
        )
    }
}

pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

pub const HEADER: &str = "# End-to-end throughput\n\
\n\
Written by `cargo run --release -p edgemodule-bench --bin e2e` (`make bench`). One publisher, one\n\
subscriber, QoS 1, inflight 100, 256-byte bodies, everything on this machine. Figures are msg/s from\n\
the publisher's start to the subscriber's last message; compare the ratios, not the absolute numbers.\n\
\n\
- **mosquitto + raw**: mosquitto and raw rumqttc clients over plain TCP (the ceiling).\n\
- **devhub + raw**: devhub routing `c/out1 -> d/in1`, raw rumqttc clients with SAS credentials on its plain MQTT port.\n\
- **devhub + edgemodule**: devhub routing `a/out1 -> b/in1`, two edgemodule `ModuleClient`s over MQTT/TLS\n\
  (`send_messages_to_output` pipelined; the receiver pulls `InputMessage` events and acks each).\n\
\n\
Every body carries a sequence number; a run counts only when each number arrived (duplicates are\n\
reported apart). mosquitto is a separate single-threaded process while devhub runs inside the\n\
bench process, so on small machines devhub can beat the \"ceiling\": a ratio above 1 is measured,\n\
not an error.\n\
\n\
| date (UTC) | arch | nproc | N | mosquitto + raw | devhub + raw | devhub + edgemodule | ours / ceiling | devhub / mosquitto |\n\
|---|---|---|---|---|---|---|---|---|\n";

/// Appends `row`, writing the header first when the file is new or empty.
pub fn append(path: &Path, row: &Row) -> BenchResult<()> {
    let fresh = std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if fresh {
        f.write_all(HEADER.as_bytes())?;
    }
    f.write_all(row.markdown().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            date: "2025-01-02".into(),
            arch: "x86_64".into(),
            nproc: 2,
            messages: 100_000,
            mosquitto_raw: 40_000.0,
            devhub_raw: 30_000.0,
            devhub_edgemodule: 20_000.4,
        }
    }

    #[test]
    fn rows_carry_the_ratios() {
        assert_eq!(
            row().markdown(),
            "| 2025-01-02 | x86_64 | 2 | 100000 | 40000 | 30000 | 20000 | 0.50 | 0.75 |\n"
        );
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }

    #[test]
    fn header_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RESULTS.md");
        append(&path, &row()).unwrap();
        append(&path, &row()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("# End-to-end throughput").count(), 1);
        assert_eq!(text.matches("| 2025-01-02 |").count(), 2);
        assert!(text.ends_with(&row().markdown()));
    }
}
