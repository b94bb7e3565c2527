//! The platform-neutral limits of one sandboxed run, their validation and the
//! parsing of sizes (`256MiB`, `1.5G`) and durations (`1.5s`, `200ms`).

use std::time::Duration;

use crate::error::{Error, Result};

/// Scheduling priority of every process in the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Idle,
    BelowNormal,
    Normal,
    AboveNormal,
    High,
}

impl Priority {
    pub const NAMES: [&'static str; 5] = ["idle", "below_normal", "normal", "above_normal", "high"];

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "idle" => Priority::Idle,
            "below_normal" => Priority::BelowNormal,
            "normal" => Priority::Normal,
            "above_normal" => Priority::AboveNormal,
            "high" => Priority::High,
            _ => {
                return Err(Error::invalid(
                    "priority",
                    format!("{s:?} is not one of {}", Priority::NAMES.join(", ")),
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        Priority::NAMES[self as usize]
    }
}

/// Every limit is optional; `None` means "not limited".
///
/// Names are those of the CLI and the Python API. What enforces each one is
/// documented in the README's limits table.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Committed memory of any one process, bytes.
    pub memory: Option<u64>,
    /// Committed memory of the whole process tree, bytes.
    pub job_memory: Option<u64>,
    /// CPU time, user + kernel, summed over the whole process tree.
    pub cpu_time: Option<Duration>,
    /// Wall-clock time from the start of the main process.
    pub wall_time: Option<Duration>,
    /// Processes alive at once (the main process counts).
    pub processes: Option<u32>,
    /// Processes started in total (the main process counts).
    pub total_processes: Option<u32>,
    /// Bytes of stdout + stderr kept; more gives `OLE`.
    pub output_limit: Option<u64>,
    /// Hard cap on CPU use, percent of the whole machine (1..=100).
    pub cpu_rate: Option<u32>,
    /// Processor affinity mask (non-zero).
    pub affinity: Option<u64>,
    pub priority: Option<Priority>,
    /// Disk I/O bandwidth, reads + writes, bytes per second.
    pub io_rate: Option<u64>,
    /// Desktop, clipboard, global-atom ... restrictions (default on).
    pub ui_restrictions: bool,
    /// Crashes end the process at once, never with a dialog (default on).
    pub no_crash_dialogs: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: None,
            job_memory: None,
            cpu_time: None,
            wall_time: None,
            processes: None,
            total_processes: None,
            output_limit: None,
            cpu_rate: None,
            affinity: None,
            priority: None,
            io_rate: None,
            ui_restrictions: true,
            no_crash_dialogs: true,
        }
    }
}

/// Longest duration any limit accepts: well inside the kernel's 100 ns `i64`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest size any limit accepts (an exbibyte).
pub const MAX_SIZE: u64 = 1 << 60;

impl Limits {
    /// Rejects every value that cannot be meant, naming the field.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("memory", self.memory),
            ("job_memory", self.job_memory),
            ("io_rate", self.io_rate),
        ] {
            if let Some(v) = v {
                check_size(field, v)?;
                if v == 0 {
                    return Err(Error::invalid(field, "0 bytes: must be at least 1"));
                }
            }
        }
        if let Some(v) = self.output_limit {
            check_size("output_limit", v)?;
        }
        for (field, v) in [("cpu_time", self.cpu_time), ("wall_time", self.wall_time)] {
            if let Some(d) = v {
                if d.is_zero() {
                    return Err(Error::invalid(field, "0 seconds: must be positive"));
                }
                if d > MAX_DURATION {
                    return Err(Error::invalid(
                        field,
                        format!("{}s is more than a year", d.as_secs_f64()),
                    ));
                }
            }
        }
        for (field, v) in [
            ("processes", self.processes),
            ("total_processes", self.total_processes),
        ] {
            if v == Some(0) {
                return Err(Error::invalid(
                    field,
                    "0: the main process itself counts, so at least 1",
                ));
            }
        }
        if let Some(r) = self.cpu_rate {
            if !(1..=100).contains(&r) {
                return Err(Error::invalid(
                    "cpu_rate",
                    format!("{r}: must be a percentage from 1 to 100"),
                ));
            }
        }
        if self.affinity == Some(0) {
            return Err(Error::invalid(
                "affinity",
                "0: the mask must name at least one processor",
            ));
        }
        Ok(())
    }
}

/// What kind of value a limit takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes, at least 1.
    Size,
    /// Bytes, 0 allowed.
    SizeOrZero,
    Seconds,
    /// A count of processes, from 1.
    Count,
    /// A percentage, from 1 to 100.
    Percent,
    /// A processor mask, not 0.
    Mask,
    Priority,
    /// On or off.
    Flag,
}

/// Every limit, by the name the Python keywords, the JSON and the stub use,
/// with its kind: the one list. [`Limits::set`] and [`Limits::get`] reach
/// the fields by these names.
pub const FIELDS: [(&str, Kind); 13] = [
    ("memory", Kind::Size),
    ("job_memory", Kind::Size),
    ("cpu_time", Kind::Seconds),
    ("wall_time", Kind::Seconds),
    ("processes", Kind::Count),
    ("total_processes", Kind::Count),
    ("output_limit", Kind::SizeOrZero),
    ("cpu_rate", Kind::Percent),
    ("affinity", Kind::Mask),
    ("priority", Kind::Priority),
    ("io_rate", Kind::Size),
    ("ui_restrictions", Kind::Flag),
    ("no_crash_dialogs", Kind::Flag),
];

/// One limit's value, as [`Limits::set`] takes it and [`Limits::get`] gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Unset,
    /// Bytes, counts, percentages and masks.
    Number(u64),
    Seconds(Duration),
    Priority(Priority),
    Flag(bool),
}

impl Limits {
    /// Sets the limit `field` (a name of [`FIELDS`]) to `v`. The value's range
    /// is checked by [`Limits::validate`]; a value of the wrong kind, or
    /// too large for the field, is an error naming the field.
    pub fn set(&mut self, field: &'static str, v: Value) -> Result<()> {
        let kind = FIELDS
            .iter()
            .find(|(f, _)| *f == field)
            .map(|&(_, k)| k)
            .ok_or_else(|| Error::invalid(field, "no such limit"))?;
        let fits = match v {
            Value::Unset => kind != Kind::Flag,
            Value::Number(_) => !matches!(kind, Kind::Seconds | Kind::Priority | Kind::Flag),
            Value::Seconds(_) => kind == Kind::Seconds,
            Value::Priority(_) => kind == Kind::Priority,
            Value::Flag(_) => kind == Kind::Flag,
        };
        if !fits {
            return Err(Error::invalid(
                field,
                format!("{v:?} is not a value of this limit"),
            ));
        }
        let n = match v {
            Value::Number(n) => Some(n),
            _ => None,
        };
        let count = || -> Result<Option<u32>> {
            n.map(|n| {
                u32::try_from(n)
                    .map_err(|_| Error::invalid(field, format!("{n} is more than {}", u32::MAX)))
            })
            .transpose()
        };
        let d = match v {
            Value::Seconds(d) => Some(d),
            _ => None,
        };
        let flag = v == Value::Flag(true);
        match field {
            "memory" => self.memory = n,
            "job_memory" => self.job_memory = n,
            "cpu_time" => self.cpu_time = d,
            "wall_time" => self.wall_time = d,
            "processes" => self.processes = count()?,
            "total_processes" => self.total_processes = count()?,
            "output_limit" => self.output_limit = n,
            "cpu_rate" => self.cpu_rate = count()?,
            "affinity" => self.affinity = n,
            "priority" => {
                self.priority = match v {
                    Value::Priority(p) => Some(p),
                    _ => None,
                }
            }
            "io_rate" => self.io_rate = n,
            "ui_restrictions" => self.ui_restrictions = flag,
            "no_crash_dialogs" => self.no_crash_dialogs = flag,
            _ => unreachable!("{field} is a name of FIELDS (checked above)"),
        }
        Ok(())
    }

    /// The value of the limit `field` (a name of [`FIELDS`]).
    pub fn get(&self, field: &str) -> Value {
        let n = |v: Option<u64>| v.map_or(Value::Unset, Value::Number);
        let c = |v: Option<u32>| n(v.map(u64::from));
        let d = |v: Option<Duration>| v.map_or(Value::Unset, Value::Seconds);
        match field {
            "memory" => n(self.memory),
            "job_memory" => n(self.job_memory),
            "cpu_time" => d(self.cpu_time),
            "wall_time" => d(self.wall_time),
            "processes" => c(self.processes),
            "total_processes" => c(self.total_processes),
            "output_limit" => n(self.output_limit),
            "cpu_rate" => c(self.cpu_rate),
            "affinity" => n(self.affinity),
            "priority" => self.priority.map_or(Value::Unset, Value::Priority),
            "io_rate" => n(self.io_rate),
            "ui_restrictions" => Value::Flag(self.ui_restrictions),
            "no_crash_dialogs" => Value::Flag(self.no_crash_dialogs),
            _ => Value::Unset,
        }
    }
}

fn check_size(field: &'static str, v: u64) -> Result<()> {
    if v > MAX_SIZE {
        return Err(Error::invalid(
            field,
            format!("{v} bytes is more than 1 EiB"),
        ));
    }
    Ok(())
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .map_or(s.len(), |(i, _)| i);
    (&s[..end], s[end..].trim())
}

fn parse_number(field: &'static str, whole: &str, num: &str) -> Result<f64> {
    let clean = num.replace('_', "");
    let valid = !clean.is_empty() && clean.matches('.').count() <= 1 && clean != ".";
    match clean.parse::<f64>() {
        Ok(v) if valid && v.is_finite() => Ok(v),
        _ => Err(Error::invalid(
            field,
            format!("{whole:?} does not start with a number"),
        )),
    }
}

/// Parses a size: a number with an optional binary suffix
/// (`K`, `M`, `G`, `T`, each optionally followed by `i`/`iB`/`B`; `B` alone).
/// `"256MiB"`, `"1.5G"`, `"64m"`, `"4096"`.
pub fn parse_size(field: &'static str, s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, unit) = split_number(t);
    let value = parse_number(field, s, num)?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        "t" | "tb" | "ti" | "tib" => 1 << 40,
        _ => {
            return Err(Error::invalid(
                field,
                format!("{s:?}: unknown size unit {unit:?} (use B, K, M, G or T)"),
            ))
        }
    };
    let bytes = value * mult as f64;
    if bytes > MAX_SIZE as f64 {
        return Err(Error::invalid(field, format!("{s:?} is more than 1 EiB")));
    }
    if bytes.fract() != 0.0 {
        return Err(Error::invalid(
            field,
            format!("{s:?} is not a whole number of bytes"),
        ));
    }
    Ok(bytes as u64)
}

/// Parses a duration: seconds with an optional unit (`us`, `ms`, `s`, `m`, `h`).
/// `"1.5s"`, `"200ms"`, `"2"`, `"0.25"`.
pub fn parse_duration(field: &'static str, s: &str) -> Result<Duration> {
    let t = s.trim();
    let (num, unit) = split_number(t);
    let value = parse_number(field, s, num)?;
    let secs_per_unit = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(Error::invalid(
                field,
                format!("{s:?}: unknown time unit {unit:?} (use ms, s, m or h)"),
            ))
        }
    };
    duration_from_secs(field, value * secs_per_unit)
}

/// Seconds as a float to a `Duration`, rejecting NaN, infinities, negatives and
/// anything above [`MAX_DURATION`].
pub fn duration_from_secs(field: &'static str, secs: f64) -> Result<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(Error::invalid(
            field,
            format!("{secs} is not a non-negative number of seconds"),
        ));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(Error::invalid(
            field,
            format!("{secs}s is more than a year"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("memory", "4096").unwrap(), 4096);
        assert_eq!(parse_size("memory", "256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("memory", "64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("memory", "1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("memory", "10K").unwrap(), 10240);
        assert_eq!(parse_size("memory", " 2 KiB ").unwrap(), 2048);
        assert_eq!(parse_size("memory", "1_000").unwrap(), 1000);
        assert_eq!(parse_size("memory", "1T").unwrap(), 1 << 40);
    }

    #[test]
    fn bad_sizes_name_field_and_value() {
        for bad in ["", "abc", "12Q", "-1", "1.2.3", "0.5", "2000000T", "."] {
            let e = parse_size("job_memory", bad).unwrap_err().to_string();
            assert!(e.contains("job_memory"), "{e}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("wall_time", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("wall_time", "200ms").unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(
            parse_duration("wall_time", "2").unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            parse_duration("wall_time", "1m").unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_duration("wall_time", "250us").unwrap(),
            Duration::from_micros(250)
        );
        for bad in ["x", "1d", "-3", "1e999", "1000000000"] {
            let e = parse_duration("cpu_time", bad).unwrap_err().to_string();
            assert!(e.contains("cpu_time"), "{e}");
        }
        assert!(duration_from_secs("t", f64::NAN).is_err());
        assert!(duration_from_secs("t", -0.5).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(Limits, &str)> = vec![
            (
                Limits {
                    memory: Some(0),
                    ..Default::default()
                },
                "memory",
            ),
            (
                Limits {
                    job_memory: Some(MAX_SIZE + 1),
                    ..Default::default()
                },
                "job_memory",
            ),
            (
                Limits {
                    cpu_time: Some(Duration::ZERO),
                    ..Default::default()
                },
                "cpu_time",
            ),
            (
                Limits {
                    wall_time: Some(MAX_DURATION * 2),
                    ..Default::default()
                },
                "wall_time",
            ),
            (
                Limits {
                    processes: Some(0),
                    ..Default::default()
                },
                "processes",
            ),
            (
                Limits {
                    total_processes: Some(0),
                    ..Default::default()
                },
                "total_processes",
            ),
            (
                Limits {
                    cpu_rate: Some(0),
                    ..Default::default()
                },
                "cpu_rate",
            ),
            (
                Limits {
                    cpu_rate: Some(101),
                    ..Default::default()
                },
                "cpu_rate",
            ),
            (
                Limits {
                    affinity: Some(0),
                    ..Default::default()
                },
                "affinity",
            ),
            (
                Limits {
                    io_rate: Some(0),
                    ..Default::default()
                },
                "io_rate",
            ),
        ];
        for (l, field) in cases {
            let e = l.validate().unwrap_err();
            assert!(
                matches!(e, Error::Invalid { field: f, .. } if f == field),
                "{e}"
            );
        }
        Limits::default().validate().unwrap();
        Limits {
            output_limit: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn priorities() {
        assert_eq!(
            Priority::parse("below-normal").unwrap(),
            Priority::BelowNormal
        );
        assert_eq!(Priority::High.name(), "high");
        assert!(Priority::parse("realtime")
            .unwrap_err()
            .to_string()
            .contains("priority"));
    }

    #[test]
    fn every_field_is_set_and_read_back_by_its_name() {
        let mut l = Limits::default();
        for (i, (name, kind)) in FIELDS.iter().enumerate() {
            let v = match kind {
                Kind::Seconds => Value::Seconds(Duration::from_millis(100 + i as u64)),
                Kind::Priority => Value::Priority(Priority::parse("high").unwrap()),
                Kind::Flag => Value::Flag(false),
                _ => Value::Number(1 + i as u64),
            };
            l.set(name, v).unwrap();
            assert_eq!(l.get(name), v, "{name}");
        }
        assert_ne!(l, Limits::default());
        l.validate().unwrap();
        for (name, kind) in FIELDS {
            if kind != Kind::Flag {
                l.set(name, Value::Unset).unwrap();
                assert_eq!(l.get(name), Value::Unset, "{name}");
            }
        }
        assert!(l
            .set("memory", Value::Seconds(Duration::from_secs(1)))
            .is_err());
        assert!(l.set("wall_time", Value::Number(1)).is_err());
        assert!(l.set("processes", Value::Number(1 << 40)).is_err());
        assert!(l.set("priority", Value::Flag(true)).is_err());
        assert!(l.set("nonsense", Value::Number(1)).is_err());
        assert!(l.set("ui_restrictions", Value::Unset).is_err());
        assert!(l.set("no_crash_dialogs", Value::Number(1)).is_err());
    }
}
