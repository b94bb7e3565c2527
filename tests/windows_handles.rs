//! Handle hygiene: 500 sandboxed runs leave the supervisor's handle count
//! where it was. In a binary of its own, so no other test opens or closes
//! handles in this process while it counts, and no other test's spawns load
//! Wine's server beside its 500.
#![cfg(windows)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use winsandbox::win::own_handle_count;
use winsandbox::Verdict;

#[test]
fn five_hundred_runs_leak_no_handle() {
    let warm = winsandbox::run(&probe_cmd(&["exit", "0"])).unwrap();
    assert_eq!(warm.verdict(), Verdict::Ok);
    std::thread::sleep(Duration::from_millis(200));
    let before = own_handle_count().unwrap();
    for i in 0..500 {
        let o = winsandbox::run(&probe_cmd(&["exit", "0"])).unwrap();
        assert_eq!(o.verdict(), Verdict::Ok, "run {i}");
    }
    // The monitor closes the handles it opened on EXIT_PROCESS messages.
    let until = Instant::now() + Duration::from_secs(5);
    let mut after = own_handle_count().unwrap();
    while after > before && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        after = own_handle_count().unwrap();
    }
    assert!(after <= before, "handle count {before} -> {after}");
}
