//! The supervisor in a job that allows breakaway: UI limits need a top-level
//! job, so the child breaks away and gets them. Own binary (see windows_nested).
#![cfg(windows)]

mod common;

use common::*;
use windows::Win32::System::JobObjects::*;
use windows::Win32::System::Threading::GetCurrentProcess;
use winsandbox::jobplan::flag;
use winsandbox::Verdict;

#[test]
fn breaks_away_to_carry_ui_limits() {
    // SAFETY: as in windows_nested.rs.
    let job = unsafe { CreateJobObjectW(None, None) }.unwrap();
    let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT(flag::BREAKAWAY_OK);
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
    let sup = winsandbox::win::supervisor_job();
    if !sup.breakaway_ok {
        // Wine does not read limits back, so the supervisor cannot see BREAKAWAY_OK.
        assert!(wine().is_some(), "breakaway not seen on Windows: {sup:?}");
        eprintln!("skipped: Wine does not read job limits back");
        return;
    }
    let o = winsandbox::run(&probe_cmd(&["in-job"])).unwrap();
    assert_eq!(o.verdict(), Verdict::Ok, "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "true");
    assert!(o.not_applied.is_empty(), "{:?}", o.not_applied);
}
