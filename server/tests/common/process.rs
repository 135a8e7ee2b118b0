//! Starting the real `kenning` binary from a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};

/// Spawns `cmd` and reads its output until a line starts with `ready`; returns the rest of it.
pub fn spawn_until(mut cmd: Command, ready: &str) -> (Child, String) {
    let mut child = cmd.spawn().expect("start kenning");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix(ready) {
                    return (child, rest.trim().to_string());
                }
            }
            _ => {
                let status = child.wait();
                panic!("kenning exited before it was ready: {status:?}");
            }
        }
    }
}
