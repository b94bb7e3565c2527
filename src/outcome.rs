//! What happened in one run: the verdict, what detected it, and the accounting.

use std::fmt::Write as _;
use std::time::Duration;

/// The verdict of a run, as a grading system reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The main process exited with code 0 and no limit was crossed.
    Ok,
    /// Runtime error: non-zero exit code or a crash.
    Re,
    /// CPU time limit (user + kernel over the tree).
    Tle,
    /// Wall time limit.
    Wle,
    /// Memory limit (per process or whole job).
    Mle,
    /// Output limit.
    Ole,
    /// Process limit (alive at once or started in total).
    Ple,
    /// The sandbox itself failed.
    Se,
    /// Wrong answer: an interactive run's interactor (or a checker) said so.
    /// A single run never gives it, nor `Pe` and `Jf`.
    Wa,
    /// Presentation error: the interactor said so.
    Pe,
    /// Judge failure: the interactor failed, or said so.
    Jf,
}

impl Verdict {
    pub const ALL: [Verdict; 11] = [
        Verdict::Ok,
        Verdict::Re,
        Verdict::Tle,
        Verdict::Wle,
        Verdict::Mle,
        Verdict::Ole,
        Verdict::Ple,
        Verdict::Se,
        Verdict::Wa,
        Verdict::Pe,
        Verdict::Jf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Re => "RE",
            Verdict::Tle => "TLE",
            Verdict::Wle => "WLE",
            Verdict::Mle => "MLE",
            Verdict::Ole => "OLE",
            Verdict::Ple => "PLE",
            Verdict::Se => "SE",
            Verdict::Wa => "WA",
            Verdict::Pe => "PE",
            Verdict::Jf => "JF",
        }
    }
}

/// What told us the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// The main process's own exit (OK, RE).
    Exit,
    /// A `JOB_OBJECT_MSG_*` message of the kernel (Windows), or a kernel
    /// signal for a limit set with `setrlimit` (POSIX).
    Kernel,
    /// The supervisor's monitor: sampling, wall clock, output counting.
    Monitor,
    /// The sandbox failed (SE).
    Sandbox,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Exit => "exit",
            Mechanism::Kernel => "kernel",
            Mechanism::Monitor => "monitor",
            Mechanism::Sandbox => "sandbox",
        }
    }
}

/// A limit that was asked for but could not be applied on this system or in
/// this situation, and why. The run goes on without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotApplied {
    pub limit: &'static str,
    pub reason: String,
}

/// One live process of a job as the system reports it now
/// (`Sandbox::processes`): the debugging view of a long-lived job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The image's file name ("prog.exe"; on Linux the command name).
    pub name: String,
    /// Bytes of physical memory in use now.
    pub working_set: u64,
    /// The most `working_set` has been.
    pub peak_working_set: u64,
    /// Committed private memory (Windows: pagefile usage; Linux: VmData).
    pub private_memory: u64,
    /// Open handles (Linux: open file descriptors).
    pub handles: u32,
    /// CPU seconds so far.
    pub user_time: f64,
    pub kernel_time: f64,
}

/// The full account of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub verdict: Option<Verdict>,
    pub mechanism: Option<Mechanism>,
    /// The limit field that fired (`"memory"`, `"wall_time"` ...), if one did.
    pub limit: Option<&'static str>,
    /// Windows: the 32-bit exit code. POSIX: the exit status, or minus the
    /// signal number when a signal ended the process (as `subprocess` does).
    pub exit_code: Option<i64>,
    /// `STATUS_ACCESS_VIOLATION`, `SIGSEGV` ... when the exit code is one.
    pub status: Option<&'static str>,
    pub pid: u32,
    pub user_time: f64,
    pub kernel_time: f64,
    /// Seconds from the moment the process exists to its exit (Windows: the
    /// kernel's exit time; POSIX: when `wait` reaps it).
    pub wall_time: f64,
    /// Highest committed memory of any one process, bytes.
    pub peak_memory: u64,
    /// Highest committed memory of the whole tree, bytes.
    pub peak_job_memory: u64,
    /// Processes started in the job, the main process included.
    pub processes: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond `output_limit` was dropped.
    pub truncated: bool,
    pub not_applied: Vec<NotApplied>,
    /// The isolation level it ran under.
    pub isolation: crate::command::Level,
    /// The working directory made for this run and kept
    /// (`Command::keep_workdir`): the caller's to read and remove.
    pub workdir: Option<std::path::PathBuf>,
    /// For `SE`: what failed.
    pub error: Option<String>,
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        self.verdict.unwrap_or(Verdict::Se)
    }

    pub fn cpu_time(&self) -> f64 {
        self.user_time + self.kernel_time
    }

    /// One JSON object (the CLI's `--json`; schema in the README).
    /// `with_output` adds `stdout`/`stderr` as text (invalid UTF-8 replaced).
    pub fn to_json(&self, with_output: bool) -> String {
        let mut s = String::from("{");
        let mut field = |name: &str, value: String| {
            if s.len() > 1 {
                s.push_str(", ");
            }
            let _ = write!(s, "{}: {}", json_str(name), value);
        };
        field("verdict", json_str(self.verdict().as_str()));
        field(
            "mechanism",
            opt(self.mechanism.map(|m| json_str(m.as_str()))),
        );
        field("limit", opt(self.limit.map(json_str)));
        field("exit_code", opt(self.exit_code.map(|c| c.to_string())));
        field("status", opt(self.status.map(json_str)));
        field("pid", self.pid.to_string());
        field("cpu_time", json_f64(self.cpu_time()));
        field("user_time", json_f64(self.user_time));
        field("kernel_time", json_f64(self.kernel_time));
        field("wall_time", json_f64(self.wall_time));
        field("peak_memory", self.peak_memory.to_string());
        field("peak_job_memory", self.peak_job_memory.to_string());
        field("processes", self.processes.to_string());
        field("read_bytes", self.read_bytes.to_string());
        field("write_bytes", self.write_bytes.to_string());
        if with_output {
            field("stdout", json_str(&String::from_utf8_lossy(&self.stdout)));
            field("stderr", json_str(&String::from_utf8_lossy(&self.stderr)));
        } else {
            field("stdout", "null".into());
            field("stderr", "null".into());
        }
        field("truncated", self.truncated.to_string());
        let na: Vec<String> = self
            .not_applied
            .iter()
            .map(|n| {
                format!(
                    "{{\"limit\": {}, \"reason\": {}}}",
                    json_str(n.limit),
                    json_str(&n.reason)
                )
            })
            .collect();
        field("not_applied", format!("[{}]", na.join(", ")));
        field("isolation", json_str(self.isolation.as_str()));
        let workdir = self.workdir.as_ref();
        field(
            "workdir",
            opt(workdir.map(|d| json_str(&d.to_string_lossy()))),
        );
        field("error", opt(self.error.as_deref().map(json_str)));
        s.push('}');
        s
    }
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "null".into())
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{:.6}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        "null".into()
    }
}

/// A JSON string literal.
pub fn json_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The name of an NTSTATUS exit code that means a crash or an abort.
pub fn ntstatus_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0x8000_0003 => "STATUS_BREAKPOINT",
        0xC000_0005 => "STATUS_ACCESS_VIOLATION",
        0xC000_0006 => "STATUS_IN_PAGE_ERROR",
        0xC000_0008 => "STATUS_INVALID_HANDLE",
        0xC000_0017 => "STATUS_NO_MEMORY",
        0xC000_001D => "STATUS_ILLEGAL_INSTRUCTION",
        0xC000_0025 => "STATUS_NONCONTINUABLE_EXCEPTION",
        0xC000_008C => "STATUS_ARRAY_BOUNDS_EXCEEDED",
        0xC000_008D => "STATUS_FLOAT_DENORMAL_OPERAND",
        0xC000_008E => "STATUS_FLOAT_DIVIDE_BY_ZERO",
        0xC000_008F => "STATUS_FLOAT_INEXACT_RESULT",
        0xC000_0090 => "STATUS_FLOAT_INVALID_OPERATION",
        0xC000_0091 => "STATUS_FLOAT_OVERFLOW",
        0xC000_0092 => "STATUS_FLOAT_STACK_CHECK",
        0xC000_0093 => "STATUS_FLOAT_UNDERFLOW",
        0xC000_0094 => "STATUS_INTEGER_DIVIDE_BY_ZERO",
        0xC000_0095 => "STATUS_INTEGER_OVERFLOW",
        0xC000_0096 => "STATUS_PRIVILEGED_INSTRUCTION",
        0xC000_00FD => "STATUS_STACK_OVERFLOW",
        0xC000_0135 => "STATUS_DLL_NOT_FOUND",
        0xC000_0139 => "STATUS_ENTRYPOINT_NOT_FOUND",
        0xC000_013A => "STATUS_CONTROL_C_EXIT",
        0xC000_0142 => "STATUS_DLL_INIT_FAILED",
        0xC000_0374 => "STATUS_HEAP_CORRUPTION",
        0xC000_0409 => "STATUS_STACK_BUFFER_OVERRUN",
        0xC000_0417 => "STATUS_INVALID_CRUNTIME_PARAMETER",
        0xC000_0420 => "STATUS_ASSERTION_FAILURE",
        0xC000_0602 => "STATUS_FAIL_FAST_EXCEPTION",
        _ => return None,
    })
}

/// The name of a POSIX signal number.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// What a job has used so far (`Sandbox::accounting`, on every backend).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// 100 ns units, every process the job ever held.
    pub user_time_100ns: i64,
    pub kernel_time_100ns: i64,
    pub total_processes: u32,
    pub active_processes: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub peak_process_memory: u64,
    pub peak_job_memory: u64,
}

impl Accounting {
    pub fn user_time(&self) -> Duration {
        Duration::from_nanos(self.user_time_100ns.max(0) as u64 * 100)
    }

    pub fn kernel_time(&self) -> Duration {
        Duration::from_nanos(self.kernel_time_100ns.max(0) as u64 * 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names() {
        assert_eq!(ntstatus_name(0xC000_0005), Some("STATUS_ACCESS_VIOLATION"));
        assert_eq!(ntstatus_name(0xC000_00FD), Some("STATUS_STACK_OVERFLOW"));
        assert_eq!(ntstatus_name(1), None);
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(24), Some("SIGXCPU"));
    }

    #[test]
    fn json_shape() {
        let o = Outcome {
            verdict: Some(Verdict::Re),
            mechanism: Some(Mechanism::Exit),
            exit_code: Some(0xC000_0005),
            status: Some("STATUS_ACCESS_VIOLATION"),
            user_time: 0.25,
            kernel_time: 0.125,
            stdout: b"a\"b\n\x01".to_vec(),
            not_applied: vec![NotApplied {
                limit: "cpu_rate",
                reason: "no".into(),
            }],
            ..Default::default()
        };
        let j = o.to_json(true);
        assert!(j.starts_with("{\"verdict\": \"RE\", \"mechanism\": \"exit\", \"limit\": null, \"exit_code\": 3221225477"));
        assert!(j.contains("\"cpu_time\": 0.375"), "{j}");
        assert!(j.contains("\"stdout\": \"a\\\"b\\n\\u0001\""), "{j}");
        assert!(
            j.contains("\"not_applied\": [{\"limit\": \"cpu_rate\", \"reason\": \"no\"}]"),
            "{j}"
        );
        assert!(o.to_json(false).contains("\"stdout\": null"));
        assert_eq!(json_f64(2.0), "2");
        assert_eq!(json_f64(f64::NAN), "null");
    }

    #[test]
    fn default_verdict_is_se() {
        assert_eq!(Outcome::default().verdict(), Verdict::Se);
        assert_eq!(Verdict::ALL.len(), 11);
    }
}
