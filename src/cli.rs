//! `winsandbox run [OPTIONS] -- PROGRAM [ARGS...]` and `winsandbox
//! interactive`: the one implementation behind the Windows executable and
//! `python -m winsandbox`.
//!
//! Exit status: 0 when the verdict is OK, 1 for any other verdict, 2 for a
//! usage error, 3 when the sandbox itself failed (SE) or, interactive, the
//! judge did (JF).

use std::io::Write;
use std::path::PathBuf;

use crate::command::{Command, Level, Output, Stdin};
use crate::interactive::{Interaction, Interactive};
use crate::limits::{parse_duration, parse_size, Priority};
use crate::outcome::{Outcome, Verdict};

pub const USAGE: &str = "\
usage: winsandbox run [OPTIONS] [--] PROGRAM [ARGS...]

limits:
  --memory SIZE          committed memory of any one process (K/M/G/T, binary)
  --job-memory SIZE      committed memory of the whole process tree
  --cpu-time SECONDS     CPU time, user + kernel, of the whole tree (decimals, or 200ms)
  --wall-time SECONDS    wall-clock time
  --processes N          processes alive at once (the program itself counts)
  --total-processes N    processes started in total
  --output-limit SIZE    bytes of stdout + stderr kept; more is OLE
  --cpu-rate PERCENT     hard cap on CPU use, 1-100 % of the machine
  --affinity MASK        processor mask (decimal or 0x hex)
  --priority CLASS       idle, below_normal, normal, above_normal, high
  --io-rate SIZE         disk bandwidth, bytes per second
  --no-ui-restrictions   allow desktop, clipboard and global atoms
stdio and environment:
  --stdin FILE           stdin from FILE (default: empty)
  --stdout FILE          stdout to FILE (default: captured)
  --stderr FILE          stderr to FILE (default: captured)
  --cwd DIR              working directory
  --env NAME=VALUE       set a variable (repeatable); --clean-env starts empty
isolation:
  --isolation LEVEL      none (default), strict (no network) or restricted; a level
                         this system does not enforce is SE (exit 3), nothing started
  --readable PATH        a path the program may read (repeatable; with a level)
  --writable PATH        a path the program may read and write (repeatable)
  --keep-workdir         keep the working directory made for a run given no --cwd
                         (named in the JSON as \"workdir\")
output:
  --json                 print the outcome as one JSON object

usage: winsandbox interactive [OPTIONS] --interactor PROGRAM [--] SOLUTION [ARGS...]

Runs SOLUTION and the interactor, each in its own sandbox, the solution's
stdout piped to the interactor's stdin and the interactor's stdout to the
solution's stdin; the verdict follows the interactor's exit code (testlib:
0 OK, 1 WA, 2 PE, 3 JF) after a limit the solution crossed. The options above
apply to the solution (but --stdin and --stdout); and:
  --interactor PROGRAM   the interactor
  --interactor-arg ARG   one argument of the interactor (repeatable, in order)
  --interactor-OPTION V  a limit, --interactor-cwd or --interactor-stderr of the interactor
                         (--interactor-wall-time 10, --interactor-memory 256M ...)
  --codes CODE=VERDICT,...  the interactor's exit codes (default 0=OK,1=WA,2=PE,3=JF)
  --json                 {\"verdict\": ..., \"solution\": {...}, \"interactor\": {...}}
";

/// What `parse` makes of the command line.
#[derive(Debug)]
pub struct Invocation {
    /// The program (interactive: the solution).
    pub command: Command,
    pub json: bool,
    /// `interactive`: the interactor, and how its exit codes read.
    pub interactor: Option<(Command, Vec<(i64, Verdict)>)>,
}

fn need<'a>(it: &mut impl Iterator<Item = &'a String>, opt: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{opt} needs a value"))
}

fn number(field: &'static str, v: &str) -> Result<u64, String> {
    let t = v.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        t.parse::<u64>()
    };
    r.map_err(|_| format!("invalid {field}: {v:?} is not a whole number"))
}

fn count(field: &'static str, v: &str) -> Result<u32, String> {
    let n = number(field, v)?;
    u32::try_from(n).map_err(|_| format!("invalid {field}: {v} is too large"))
}

/// Applies one option (`--name`, its value from `val` when it takes one)
/// to `cmd`; `Ok(false)` when it is no option of a command.
fn apply(
    cmd: &mut Command,
    opt: &str,
    val: &mut dyn FnMut() -> Result<String, String>,
) -> Result<bool, String> {
    let l = &mut cmd.limits;
    let e = |e: crate::error::Error| e.to_string();
    match opt {
        "--memory" => l.memory = Some(parse_size("memory", &val()?).map_err(e)?),
        "--job-memory" => l.job_memory = Some(parse_size("job_memory", &val()?).map_err(e)?),
        "--cpu-time" => l.cpu_time = Some(parse_duration("cpu_time", &val()?).map_err(e)?),
        "--wall-time" => l.wall_time = Some(parse_duration("wall_time", &val()?).map_err(e)?),
        "--processes" => l.processes = Some(count("processes", &val()?)?),
        "--total-processes" => l.total_processes = Some(count("total_processes", &val()?)?),
        "--output-limit" => l.output_limit = Some(parse_size("output_limit", &val()?).map_err(e)?),
        "--cpu-rate" => l.cpu_rate = Some(count("cpu_rate", &val()?)?),
        "--affinity" => l.affinity = Some(number("affinity", &val()?)?),
        "--priority" => l.priority = Some(Priority::parse(&val()?).map_err(e)?),
        "--io-rate" => l.io_rate = Some(parse_size("io_rate", &val()?).map_err(e)?),
        "--no-ui-restrictions" => l.ui_restrictions = false,
        "--stdin" => cmd.stdin = Stdin::File(PathBuf::from(val()?)),
        "--stdout" => cmd.stdout = Output::File(PathBuf::from(val()?)),
        "--stderr" => cmd.stderr = Output::File(PathBuf::from(val()?)),
        "--cwd" => cmd.cwd = Some(PathBuf::from(val()?)),
        "--isolation" => cmd.isolation.level = Level::parse(&val()?).map_err(e)?,
        "--readable" => cmd.isolation.readable.push(PathBuf::from(val()?)),
        "--writable" => cmd.isolation.writable.push(PathBuf::from(val()?)),
        "--keep-workdir" => cmd.keep_workdir = true,
        "--env" => {
            let v = val()?;
            let (k, x) = v
                .split_once('=')
                .filter(|(k, _)| !k.is_empty() && !k.contains('\0'))
                .ok_or_else(|| format!("--env takes NAME=VALUE, not {v:?}"))?;
            cmd.env.changes.push((k.to_string(), Some(x.to_string())));
        }
        "--clean-env" => cmd.env.inherit = false,
        _ => return Ok(false),
    }
    Ok(true)
}

/// `--codes 0=OK,1=WA,...`.
fn codes(v: &str) -> Result<Vec<(i64, Verdict)>, String> {
    v.split(',')
        .map(|pair| {
            let (c, name) = pair
                .split_once('=')
                .ok_or_else(|| format!("--codes takes CODE=VERDICT,..., not {v:?}"))?;
            let code = c
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("invalid --codes: {c:?} is not an exit code"))?;
            let verdict = Verdict::ALL
                .into_iter()
                .find(|x| x.as_str() == name.trim())
                .ok_or_else(|| format!("invalid --codes: {name:?} is no verdict"))?;
            Ok((code, verdict))
        })
        .collect()
}

/// Parses the arguments after the program name (`run ...`, `interactive ...`).
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut it = args.iter();
    let interactive = match it.next().map(String::as_str) {
        Some("run") => false,
        Some("interactive") => true,
        Some("-h" | "--help") | None => return Err(String::new()),
        Some(other) => {
            return Err(format!(
                "unknown command {other:?}: the commands are `run` and `interactive`"
            ))
        }
    };
    let mut cmd = Command::new("");
    let mut int = Command::new("");
    let mut table = crate::decide::TESTLIB_CODES.to_vec();
    let mut json = false;
    let mut program: Option<String> = None;
    while let Some(a) = it.next() {
        if a == "--" {
            program = it.next().cloned();
            break;
        }
        if !a.starts_with("--") || a == "-" {
            if a.starts_with('-') && a.len() > 1 {
                return Err(format!("unknown option {a:?}"));
            }
            program = Some(a.clone());
            break;
        }
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) => (o, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut val = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => need(&mut it, opt).cloned(),
            }
        };
        let flag = matches!(
            opt,
            "--no-ui-restrictions" | "--clean-env" | "--json" | "--keep-workdir"
        );
        let interactor_opt = opt.strip_prefix("--interactor-").map(|o| format!("--{o}"));
        match opt {
            "--json" => json = true,
            "--help" => return Err(String::new()),
            "--interactor" if interactive => int.program = val()?,
            "--interactor-arg" if interactive => int.args.push(val()?),
            "--codes" if interactive => table = codes(&val()?)?,
            "--stdin" | "--stdout" if interactive => {
                return Err(format!(
                    "{opt} is not for an interactive run: the pipes are its stdin and stdout"
                ))
            }
            _ if interactive && interactor_opt.is_some() => {
                let o = interactor_opt.expect("checked");
                if matches!(
                    o.as_str(),
                    "--stdin" | "--stdout" | "--env" | "--clean-env" | "--json"
                ) || !apply(&mut int, &o, &mut val)?
                {
                    return Err(format!("unknown option {opt:?}"));
                }
            }
            _ => {
                if !apply(&mut cmd, opt, &mut val)? {
                    return Err(format!("unknown option {opt:?}"));
                }
            }
        }
        if inline.is_some() && flag {
            return Err(format!("{opt} takes no value"));
        }
    }
    let program = program.ok_or("no PROGRAM given")?;
    if program.is_empty() {
        return Err("PROGRAM is empty".into());
    }
    cmd.program = program;
    cmd.args = it.cloned().collect();
    cmd.limits.validate().map_err(|e| e.to_string())?;
    cmd.validate_isolation().map_err(|e| e.to_string())?;
    let interactor = if interactive {
        if int.program.is_empty() {
            return Err("no --interactor given".into());
        }
        int.env = cmd.env.clone();
        int.limits
            .validate()
            .and_then(|()| int.validate_isolation())
            .map_err(|e| format!("interactor: {e}"))?;
        Some((int, table))
    } else {
        None
    };
    Ok(Invocation {
        command: cmd,
        json,
        interactor,
    })
}

fn human(o: &Outcome) -> String {
    let mut s = format!("verdict: {}", o.verdict().as_str());
    if let Some(m) = o.mechanism {
        s += &format!(" (by {}", m.as_str());
        if let Some(l) = o.limit {
            s += &format!(", limit {l}");
        }
        s += ")";
    }
    if let Some(c) = o.exit_code {
        s += &format!("\nexit code: {c}");
        if let Some(n) = o.status {
            s += &format!(" ({n})");
        } else if c > 0xFFFF {
            s += &format!(" (0x{c:08X})");
        }
    }
    s += &format!(
        "\ncpu: {:.3}s (user {:.3}s, kernel {:.3}s)  wall: {:.3}s\npeak memory: {} bytes (job {} bytes)  processes: {}",
        o.cpu_time(),
        o.user_time,
        o.kernel_time,
        o.wall_time,
        o.peak_memory,
        o.peak_job_memory,
        o.processes
    );
    if o.truncated {
        s += "\noutput truncated at the output limit";
    }
    for n in &o.not_applied {
        s += &format!("\nnot applied: {} ({})", n.limit, n.reason);
    }
    if let Some(e) = &o.error {
        s += &format!("\nerror: {e}");
    }
    s
}

/// Runs the CLI with `args` (without the program name), writing to `out` and
/// `err`; returns the exit status.
pub fn main_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    main_until(args, out, err, &mut || false)
}

/// How often a running CLI asks `stop` whether to end.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// `crate::run`, asking `stop` every `STOP_POLL`: when it says so, the whole
/// tree is killed and None returned.
fn run_until(cmd: &Command, stop: &mut dyn FnMut() -> bool) -> crate::Result<Option<Outcome>> {
    let mut r = crate::backend::Running::start(cmd)?;
    loop {
        if let Some(o) = r.wait(Some(STOP_POLL))? {
            return Ok(Some(o));
        }
        if stop() {
            r.kill();
            return Ok(None); // dropping `r` reaps what was killed
        }
    }
}

/// An interactive run, asking `stop` every `STOP_POLL` (see `run_until`).
fn interact_until(
    solution: &Command,
    interactor: &Command,
    codes: &[(i64, Verdict)],
    stop: &mut dyn FnMut() -> bool,
) -> crate::Result<Option<Interaction>> {
    let r = Interactive::start(solution, interactor, codes)?;
    loop {
        if let Some(x) = r.wait(Some(STOP_POLL)) {
            return x.map(Some);
        }
        if stop() {
            r.kill();
            let _ = r.wait(None); // both trees end at once
            return Ok(None);
        }
    }
}

/// The exit status for a verdict.
fn status_of(v: Verdict) -> i32 {
    match v {
        Verdict::Ok => 0,
        Verdict::Se | Verdict::Jf => 3,
        _ => 1,
    }
}

/// The CLI's interactive run: both outcomes, as text on stderr or as JSON.
fn interactive_main(
    inv: &Invocation,
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: &mut dyn FnMut() -> bool,
) -> i32 {
    let (int, codes) = inv.interactor.as_ref().expect("an interactive invocation");
    match interact_until(&inv.command, int, codes, stop) {
        Ok(None) => {
            let _ = writeln!(
                err,
                "winsandbox: interrupted; both programs and their trees were killed"
            );
            130
        }
        Ok(Some(x)) => {
            if inv.json {
                let _ = writeln!(
                    out,
                    "{{\"verdict\": \"{}\", \"solution\": {}, \"interactor\": {}}}",
                    x.verdict.as_str(),
                    x.solution.to_json(true),
                    x.interactor.to_json(true)
                );
            } else {
                for (name, o) in [("solution", &x.solution), ("interactor", &x.interactor)] {
                    let _ = err.write_all(&o.stderr);
                    let _ = writeln!(err, "--- {name}\n{}", human(o));
                }
                let _ = writeln!(err, "--- verdict: {}", x.verdict.as_str());
            }
            status_of(x.verdict)
        }
        Err(e) => {
            if inv.json {
                let _ = writeln!(
                    out,
                    "{{\"verdict\": \"SE\", \"error\": {}}}",
                    crate::outcome::json_str(&e.to_string())
                );
            }
            let _ = writeln!(err, "winsandbox: {e}");
            3
        }
    }
}

/// `main_with`, ending the run (the whole tree) and returning 130 as soon as
/// `stop` says so: `python -m winsandbox` passes a check for Ctrl-C and
/// SIGTERM.
pub fn main_until(
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
    stop: &mut dyn FnMut() -> bool,
) -> i32 {
    let inv = match parse(args) {
        Ok(i) => i,
        Err(m) if m.is_empty() => {
            let _ = write!(out, "{USAGE}");
            return if args.is_empty() { 2 } else { 0 };
        }
        Err(m) => {
            let _ = writeln!(err, "winsandbox: {m}\n\n{USAGE}");
            return 2;
        }
    };
    if inv.interactor.is_some() {
        return interactive_main(&inv, out, err, stop);
    }
    let captured = matches!(inv.command.stdout, Output::Capture)
        || matches!(inv.command.stderr, Output::Capture);
    match run_until(&inv.command, stop) {
        Ok(None) => {
            let _ = writeln!(
                err,
                "winsandbox: interrupted; the program and its tree were killed"
            );
            130
        }
        Ok(Some(o)) => {
            if inv.json {
                let _ = writeln!(out, "{}", o.to_json(captured));
            } else {
                let _ = out.write_all(&o.stdout);
                let _ = err.write_all(&o.stderr);
                let _ = writeln!(err, "{}", human(&o));
            }
            status_of(o.verdict())
        }
        Err(e) => {
            if inv.json {
                let o = Outcome {
                    verdict: Some(Verdict::Se),
                    error: Some(e.to_string()),
                    isolation: inv.command.isolation.level,
                    ..Default::default()
                };
                let _ = writeln!(out, "{}", o.to_json(false));
            }
            let _ = writeln!(err, "winsandbox: {e}");
            3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(a: &[&str]) -> Result<Invocation, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn full_command() {
        let i = p(&[
            "run",
            "--memory",
            "64M",
            "--job-memory=1G",
            "--cpu-time",
            "1.5",
            "--wall-time",
            "200ms",
            "--processes",
            "4",
            "--output-limit",
            "1K",
            "--stdin",
            "in.txt",
            "--json",
            "--",
            "prog",
            "--memory",
            "x",
        ])
        .unwrap();
        let l = &i.command.limits;
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.job_memory, Some(1 << 30));
        assert_eq!(l.cpu_time, Some(Duration::from_millis(1500)));
        assert_eq!(l.wall_time, Some(Duration::from_millis(200)));
        assert_eq!(l.processes, Some(4));
        assert_eq!(l.output_limit, Some(1024));
        assert!(i.json);
        assert_eq!(i.command.program, "prog");
        assert_eq!(i.command.args, vec!["--memory", "x"]);
        assert_eq!(i.command.stdin, Stdin::File("in.txt".into()));
    }

    #[test]
    fn program_without_dashdash() {
        let i = p(&["run", "--wall-time", "1", "prog", "a"]).unwrap();
        assert_eq!(i.command.program, "prog");
        assert_eq!(i.command.args, vec!["a"]);
    }

    #[test]
    fn usage_errors_name_the_problem() {
        for (args, needle) in [
            (vec!["run", "--memory", "12Q", "--", "x"], "memory"),
            (vec!["run", "--memory"], "--memory needs a value"),
            (vec!["run", "--bogus", "x"], "--bogus"),
            (vec!["run", "--processes", "0", "x"], "processes"),
            (vec!["run", "--cpu-rate", "150", "x"], "cpu_rate"),
            (vec!["run"], "no PROGRAM"),
            (vec!["frobnicate"], "unknown command"),
            (vec!["run", "--env", "novalue", "x"], "NAME=VALUE"),
            (vec!["run", "--env", "=x", "x"], "NAME=VALUE"),
            (vec!["run", "--json=1", "x"], "takes no value"),
        ] {
            let e = p(&args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn bad_arguments_exit_2() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = main_with(
            &["run".into(), "--wall-time".into(), "-1".into(), "x".into()],
            &mut out,
            &mut err,
        );
        assert_eq!(code, 2);
        assert!(String::from_utf8_lossy(&err).contains("wall_time"));
    }

    #[test]
    fn interactive_command_line() {
        let i = p(&[
            "interactive",
            "--wall-time",
            "2",
            "--interactor",
            "inter",
            "--interactor-arg",
            "in.txt",
            "--interactor-arg=out.txt",
            "--interactor-wall-time",
            "10",
            "--interactor-memory=256M",
            "--interactor-cwd",
            "judge",
            "--codes",
            "0=OK,1=WA,7=PE",
            "--json",
            "--",
            "sol",
            "--x",
        ])
        .unwrap();
        assert_eq!(
            (i.command.program.as_str(), i.command.args.as_slice()),
            ("sol", &["--x".to_string()][..])
        );
        assert_eq!(i.command.limits.wall_time, Some(Duration::from_secs(2)));
        let (int, codes) = i.interactor.unwrap();
        assert_eq!(int.program, "inter");
        assert_eq!(int.args, ["in.txt", "out.txt"]);
        assert_eq!(int.limits.wall_time, Some(Duration::from_secs(10)));
        assert_eq!(int.limits.memory, Some(256 << 20));
        assert_eq!(int.cwd.as_deref(), Some(std::path::Path::new("judge")));
        assert_eq!(
            codes,
            vec![(0, Verdict::Ok), (1, Verdict::Wa), (7, Verdict::Pe)]
        );
        assert!(
            p(&["run", "--interactor", "x", "sol"]).is_err(),
            "run has no interactor"
        );
        for (args, says) in [
            (&["interactive", "sol"][..], "--interactor"),
            (
                &["interactive", "--interactor", "i", "--stdin", "f", "sol"][..],
                "--stdin",
            ),
            (
                &[
                    "interactive",
                    "--interactor",
                    "i",
                    "--interactor-stdout",
                    "f",
                    "sol",
                ][..],
                "--interactor-stdout",
            ),
            (
                &[
                    "interactive",
                    "--interactor",
                    "i",
                    "--codes",
                    "0=GOOD",
                    "sol",
                ][..],
                "GOOD",
            ),
            (
                &[
                    "interactive",
                    "--interactor",
                    "i",
                    "--interactor-wall-time",
                    "-1",
                    "sol",
                ][..],
                "wall_time",
            ),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
