//! Whether anything but the local model needs the cores: the model reads prompts on every core
//! when nothing else does, and leaves one free otherwise (its threads wait for each other, so a
//! core taken by a search or an ingestion batch stalls all of them). Measured from the kernel's
//! counters every quarter second, the model's own threads left out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The name of the model's thread; the threads it starts for llama.cpp inherit it.
pub const MODEL_THREAD: &str = "kenning-llm";

/// How often the counters are read.
const PERIOD: Duration = Duration::from_millis(250);

/// Cores busy with anything but the model's threads over the last period, as `f64` bits;
/// `u64::MAX` until measured or where the counters cannot be read.
static OTHERS_BUSY: AtomicU64 = AtomicU64::new(u64::MAX);

/// Starts the watch (once per process); a no-op where `/proc` cannot be read.
pub fn watch() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if read().is_none() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("kenning-cpu".into())
            .spawn(|| {
                let mut last = read();
                loop {
                    std::thread::sleep(PERIOD);
                    let now = read();
                    let busy = match (&last, &now) {
                        (Some(a), Some(b)) => others_busy_between(a, b),
                        _ => None,
                    };
                    OTHERS_BUSY.store(busy.map_or(u64::MAX, f64::to_bits), Ordering::Relaxed);
                    last = now;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the CPU watch; the model keeps a core free");
        }
    });
}

/// Whether the cores are free for the model to read a prompt on all of them: less than half a
/// core was busy with anything else in the last period. False when unknown.
pub fn cores_free() -> bool {
    let bits = OTHERS_BUSY.load(Ordering::Relaxed);
    bits != u64::MAX && f64::from_bits(bits) < 0.5
}

/// The counters at one moment, in clock ticks.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    /// Ticks every core spent busy.
    busy: u64,
    /// Ticks every core spent, busy or idle.
    total: u64,
    /// Ticks the model's threads spent.
    model: u64,
    cores: u64,
}

fn read() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut sample = parse_stat(&stat)?;
    let mut model = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("stat")) {
            model += model_ticks(&text).unwrap_or(0);
        }
    }
    sample.model = model;
    Some(sample)
}

/// The machine's busy and total ticks and its core count, from `/proc/stat`.
fn parse_stat(stat: &str) -> Option<Sample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    (ticks.len() >= 4 && cores > 0).then_some(Sample {
        busy,
        total: busy + idle,
        model: 0,
        cores,
    })
}

/// A thread's user and system ticks from its `stat` line, when it is one of the model's.
fn model_ticks(stat: &str) -> Option<u64> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if stat.get(open + 1..close)? != MODEL_THREAD {
        return None;
    }
    // After the name: state (field 3), …, utime (14), stime (15).
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Cores busy with anything but the model between two samples.
fn others_busy_between(a: &Sample, b: &Sample) -> Option<f64> {
    let total = b.total.checked_sub(a.total)?;
    if total == 0 {
        return None;
    }
    let busy = b.busy.saturating_sub(a.busy) as f64;
    let model = b.model.saturating_sub(a.model) as f64;
    // Ticks of one core over the period: the total is summed over every core.
    let per_core = total as f64 / b.cores.max(1) as f64;
    Some(((busy - model) / per_core).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_counters_are_read_from_proc_stat() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n\
                    cpu1 50 3 25 400 10 2 1 0 0 0\nintr 1 2 3\nctxt 9\n";
        let s = parse_stat(stat).expect("parsed");
        assert_eq!((s.busy, s.total, s.cores), (160, 980, 2));
        assert_eq!(parse_stat("intr 1 2\n"), None);
    }

    #[test]
    fn only_the_model_threads_count_as_the_model() {
        let model = "4242 (kenning-llm) S 1 1 1 0 -1 4194368 10 0 0 0 70 30 0 0 20 0 3 0";
        assert_eq!(model_ticks(model), Some(100));
        let other = "4243 (tokio-runtime-w) S 1 1 1 0 -1 4194368 10 0 0 0 70 30 0 0 20 0";
        assert_eq!(model_ticks(other), None);
        // A name with spaces and parentheses of its own.
        let odd = "4244 (a (b) c) S 1 1 1 0 -1 4194368 10 0 0 0 70 30 0 0";
        assert_eq!(model_ticks(odd), None);
    }

    #[test]
    fn the_models_own_time_is_left_out() {
        let a = Sample {
            busy: 0,
            total: 0,
            model: 0,
            cores: 2,
        };
        // Two cores for 100 ticks each: 150 busy, 100 of them the model's.
        let b = Sample {
            busy: 150,
            total: 200,
            model: 100,
            cores: 2,
        };
        assert_eq!(others_busy_between(&a, &b), Some(0.5));
        let idle = Sample {
            busy: 100,
            total: 200,
            model: 100,
            cores: 2,
        };
        assert_eq!(others_busy_between(&a, &idle), Some(0.0));
        assert_eq!(others_busy_between(&b, &a), None);
    }

    #[test]
    fn this_machine_can_be_watched() {
        // Linux CI machines have /proc; the watch measures something within a few periods.
        if read().is_none() {
            return;
        }
        watch();
        std::thread::sleep(PERIOD * 3);
        assert_ne!(OTHERS_BUSY.load(Ordering::Relaxed), u64::MAX);
    }
}
