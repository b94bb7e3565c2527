//! The core in a few lines: a child tree started in a job, the job's process
//! list, then the whole tree killed by closing the job, printed as it happens.
//! `scripts/demo.sh` runs it under Wine (the Windows backend) and on Linux.

use std::time::{Duration, Instant};

use winsandbox::backend::Sandbox;
use winsandbox::{Command, Limits, Output};

fn probe() -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join(format!("wsb-probe{}", std::env::consts::EXE_SUFFIX))
        .to_string_lossy()
        .into_owned()
}

fn main() {
    let t0 = Instant::now();
    let say = |m: String| println!("[{:6.3}s] {m}", t0.elapsed().as_secs_f64());
    let out = std::env::temp_dir().join(format!("wsb-demo-{}.txt", std::process::id()));
    let sb = Sandbox::new(&Limits::default()).expect("create the job");
    say("job created (kill-on-close)".into());
    let mut cmd = Command::new(probe()).args(["tree", "3", "600"]);
    cmd.stdout = Output::File(out.clone());
    let child = sb.spawn(&cmd).expect("spawn into the job");
    say(format!(
        "started wsb-probe (pid {}): it starts 3 children that sleep for 10 minutes",
        child.pid()
    ));
    let until = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&out).map_or(0, |s| s.lines().count()) < 3
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let kids: Vec<u32> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    say(format!("children started: {kids:?}"));
    let mut all = sb.process_ids().expect("the job's process list");
    all.sort();
    say(format!("the job's process list: {all:?}"));
    say("closing the job...".into());
    drop(sb);
    std::thread::sleep(Duration::from_millis(200));
    let alive: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&p| winsandbox::backend::process_alive(p))
        .collect();
    say(format!("still alive after close: {alive:?}"));
    let _ = std::fs::remove_file(&out);
    if !alive.is_empty() {
        std::process::exit(1);
    }
}
