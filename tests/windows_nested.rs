//! The supervisor itself in a job that forbids breakaway (CI runners,
//! services): the child's job nests inside it, and UI limits, which a nested
//! job cannot carry, are reported as not applied. Own binary: the test
//! process joins a job for good.
#![cfg(windows)]

mod common;

use common::*;
use windows::Win32::System::JobObjects::*;
use windows::Win32::System::Threading::GetCurrentProcess;
use winsandbox::jobplan::flag;
use winsandbox::{Limits, Verdict};

fn join_outer_job(limit_flags: u32) {
    // SAFETY: an anonymous job; its handle is leaked on purpose (the process stays in it).
    let job = unsafe { CreateJobObjectW(None, None) }.unwrap();
    let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT(limit_flags);
    // SAFETY: a live struct of the size passed.
    unsafe {
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            &info as *const _ as *const _,
            std::mem::size_of_val(&info) as u32,
        )
    }
    .unwrap();
    // SAFETY: the current-process pseudo-handle.
    unsafe { AssignProcessToJobObject(job, GetCurrentProcess()) }.unwrap();
}

#[test]
fn nested_in_a_job_without_breakaway() {
    join_outer_job(0);
    let sup = winsandbox::win::supervisor_job();
    assert!(sup.in_job && !sup.breakaway_ok, "{sup:?}");
    let o = winsandbox::run(&probe_cmd(&["in-job"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "true");
    assert!(
        o.not_applied.iter().any(|n| n.limit == "ui_restrictions"),
        "{:?}",
        o.not_applied
    );
    // Without UI limits nothing is missing.
    let o = winsandbox::run(&with_limits(
        &["exit", "0"],
        Limits {
            ui_restrictions: false,
            ..Default::default()
        },
    ))
    .unwrap();
    assert_eq!(o.verdict(), Verdict::Ok);
    assert!(o.not_applied.is_empty(), "{:?}", o.not_applied);
    let _ = flag::BREAKAWAY_OK;
}
