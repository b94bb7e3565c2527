//! The native module `winsandbox._winsandbox`: small and primitive (argv,
//! paths, integers and seconds). The friendly API is Python
//! (`python/winsandbox/`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple};

use crate::backend;
use crate::cmdline::EnvSpec;
use crate::command::{Command, Isolation, Level, Output, SpawnPath, Stdin};
use crate::driver::{self, Done};
use crate::error::Error;
use crate::interactive::Interactive;
use crate::limits::{
    duration_from_secs, parse_duration, parse_size, Kind, Limits, Priority, Value, FIELDS,
};
use crate::outcome::{Outcome, Verdict};

/// How long one GIL-free wait of the main thread lasts before signals are
/// checked. Python runs signal handlers only on the main thread, so waits on
/// other threads (`run_async`'s, `run_many`'s) are not sliced: a thousand of
/// them wake nothing until their runs end.
const SLICE: Duration = Duration::from_millis(50);

/// The length of the next GIL-free wait: what is left of `total` (`None`:
/// no end), no longer than [`SLICE`] on the main thread.
fn next_slice(
    py: Python<'_>,
    total: Option<Duration>,
    start: std::time::Instant,
) -> PyResult<Option<Duration>> {
    let threading = py.import("threading")?;
    let main = threading
        .call_method0("current_thread")?
        .is(&threading.call_method0("main_thread")?);
    let left = total.map(|t| t.saturating_sub(start.elapsed()));
    Ok(match (left, main) {
        (Some(l), true) => Some(l.min(SLICE)),
        (None, true) => Some(SLICE),
        (l, false) => l,
    })
}
/// Waits up to `timeout` seconds (`None`: no end) for `wait_for(slice)` to
/// give a value, without the GIL, in slices on the main thread so that
/// Ctrl-C is seen there (KeyboardInterrupt).
fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    wait_for: impl Fn(Option<Duration>) -> Option<T> + Sync,
) -> PyResult<Option<T>> {
    let total = secs("timeout", timeout)?;
    let start = std::time::Instant::now();
    loop {
        let slice = next_slice(py, total, start)?;
        if let Some(v) = py.detach(|| wait_for(slice)) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if total.is_some_and(|t| start.elapsed() >= t) {
            return Ok(None);
        }
    }
}

/// `subprocess.PIPE` and `subprocess.DEVNULL`.
const PIPE: i64 = -1;
const DEVNULL: i64 = -3;

pyo3::create_exception!(
    _winsandbox,
    SandboxError,
    PyOSError,
    "The sandbox could not do what was asked. An OSError: `winerror` (Windows) \
     and `errno` keep the system's code, and each error is also the matching \
     built-in subclass, so `except FileNotFoundError` works too."
);

pyo3::create_exception!(
    _winsandbox,
    IsolationError,
    SandboxError,
    "An isolation level this system does not enforce: nothing was started."
);

/// The `SandboxError` class that is also `base` (`FileNotFoundError` …),
/// made once per base: `SandboxError` itself for a plain `OSError`.
fn sandbox_class<'py>(
    py: Python<'py>,
    base: &Bound<'py, pyo3::types::PyType>,
) -> PyResult<Bound<'py, pyo3::types::PyType>> {
    static CLASSES: pyo3::sync::PyOnceLock<Py<PyDict>> = pyo3::sync::PyOnceLock::new();
    let sandbox = py.get_type::<SandboxError>();
    if base.is_subclass(&sandbox)? {
        return Ok(base.clone());
    }
    if base.is(py.get_type::<PyOSError>()) {
        return Ok(sandbox);
    }
    let cache = CLASSES
        .get_or_init(py, || PyDict::new(py).unbind())
        .bind(py);
    if let Some(c) = cache.get_item(base)? {
        return Ok(c.cast_into()?);
    }
    let name = format!("Sandbox{}", base.name()?);
    let ns = PyDict::new(py);
    ns.set_item("__module__", "winsandbox")?;
    let class = py
        .import("builtins")?
        .getattr("type")?
        .call1((name, (sandbox, base), ns))?
        .cast_into::<pyo3::types::PyType>()?;
    cache.set_item(base, &class)?;
    Ok(class)
}

/// An `OSError` made from `args` (errno, strerror[, filename[, winerror]]),
/// as the matching `SandboxError` subclass: Python picks the built-in
/// subclass from the code, then the sandbox's twin of it is raised.
fn sandbox_os_error(py: Python<'_>, args: Bound<'_, PyTuple>) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let plain = py.get_type::<PyOSError>().call1(&args)?;
        let class = sandbox_class(py, &plain.get_type())?;
        Ok(PyErr::from_value(class.call1(&args)?))
    })();
    made.unwrap_or_else(|e| e)
}

/// `e` (an OSError raised in Python) as the matching `SandboxError`, with
/// its code, text and file name.
#[pyfunction]
fn sandbox_error<'py>(py: Python<'py>, e: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let class = sandbox_class(py, &e.get_type())?;
    if class.is(e.get_type()) {
        return Ok(e.clone());
    }
    let args = e.getattr("args")?;
    let (errno, strerror, filename) = (
        e.getattr("errno")?,
        e.getattr("strerror")?,
        e.getattr("filename")?,
    );
    let winerror = e.getattr("winerror").ok().filter(|w| !w.is_none());
    if errno.is_none() && winerror.is_none() {
        return class.call1(args.cast::<PyTuple>()?);
    }
    match winerror {
        Some(w) => class.call1((errno, strerror, filename, w)),
        None if !filename.is_none() => class.call1((errno, strerror, filename)),
        None => class.call1((errno, strerror)),
    }
}

fn to_py(e: Error) -> PyErr {
    match e {
        Error::Isolation { code, .. } => {
            let msg = e.to_string();
            match code {
                Some(c) if crate::BACKEND == "windows" => {
                    IsolationError::new_err((0, msg, Option::<String>::None, c))
                }
                Some(c) => IsolationError::new_err((c, msg)),
                None => IsolationError::new_err(msg),
            }
        }
        Error::Invalid { .. } => PyValueError::new_err(e.to_string()),
        Error::Os { ref source, .. } => {
            let msg = e.to_string();
            let code = source.raw_os_error();
            Python::attach(|py| {
                let args = match code {
                    // OSError(errno, strerror, filename, winerror): CPython derives
                    // errno and the subclass (FileNotFoundError ...) from winerror.
                    Some(c) if crate::BACKEND == "windows" => (0, msg, py.None(), c)
                        .into_pyobject(py)
                        .map(|t| t.into_any()),
                    Some(c) => (c, msg).into_pyobject(py).map(|t| t.into_any()),
                    None => (msg,).into_pyobject(py).map(|t| t.into_any()),
                };
                match args.and_then(|a| Ok(a.cast_into::<PyTuple>()?)) {
                    Ok(a) => sandbox_os_error(py, a),
                    Err(err) => err,
                }
            })
        }
        Error::Sandbox { .. } => SandboxError::new_err(e.to_string()),
    }
}

fn secs(field: &'static str, v: Option<f64>) -> PyResult<Option<Duration>> {
    v.map(|s| duration_from_secs(field, s))
        .transpose()
        .map_err(to_py)
}

/// One limit's value as Python gives it: an int (never a bool) for bytes and
/// counts, a number of seconds, or a string with units; a bool for a flag.
/// Errors are TypeError or ValueError naming the field.
fn py_value(field: &'static str, kind: Kind, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let got = || v.repr().map_or_else(|_| "?".into(), |r| r.to_string());
    let type_err =
        |what: &str| PyTypeError::new_err(format!("{field}: expected {what}, got {}", got()));
    let is_bool = v.is_instance_of::<PyBool>();
    if kind == Kind::Flag {
        return match is_bool {
            true => Ok(Value::Flag(v.extract()?)),
            false => Err(type_err("a bool")),
        };
    }
    if v.is_none() {
        return Ok(Value::Unset);
    }
    let text = v.cast::<PyString>().ok().map(|s| s.to_string());
    let int = (!is_bool)
        .then(|| {
            v.cast::<PyInt>()
                .ok()
                .and_then(|i| i.extract::<i128>().ok())
        })
        .flatten();
    let out_of_range =
        |n: i128, what: &str| PyValueError::new_err(format!("invalid {field}: {n} ({what})"));
    match kind {
        Kind::Flag => unreachable!("handled above"),
        Kind::Priority => match text {
            Some(t) => Ok(Value::Priority(Priority::parse(&t).map_err(to_py)?)),
            None => Err(type_err("a string")),
        },
        Kind::Seconds => {
            let secs = match (text, int) {
                (Some(t), _) => {
                    return Ok(Value::Seconds(parse_duration(field, &t).map_err(to_py)?))
                }
                (None, Some(n)) => n as f64,
                (None, None) if !is_bool && v.is_instance_of::<PyFloat>() => v.extract::<f64>()?,
                _ => return Err(type_err("seconds as a number or a string like '1.5s'")),
            };
            if !secs.is_finite() || secs <= 0.0 {
                return Err(PyValueError::new_err(format!(
                    "invalid {field}: {secs} (must be a positive, finite number of seconds)"
                )));
            }
            Ok(Value::Seconds(
                duration_from_secs(field, secs).map_err(to_py)?,
            ))
        }
        Kind::Size | Kind::SizeOrZero => match (text, int) {
            (Some(t), _) => Ok(Value::Number(parse_size(field, &t).map_err(to_py)?)),
            (None, Some(n)) => u64::try_from(n)
                .map(Value::Number)
                .map_err(|_| out_of_range(n, "bytes must be >= 0")),
            _ => Err(type_err("bytes as an int or a string like '256MiB'")),
        },
        Kind::Count | Kind::Percent | Kind::Mask => match int {
            Some(n) => u64::try_from(n)
                .ok()
                .filter(|&n| kind == Kind::Mask || n <= u64::from(u32::MAX))
                .map(Value::Number)
                .ok_or_else(|| out_of_range(n, "out of range")),
            None => Err(type_err("an int")),
        },
    }
}

/// `Limits` from anything that has the limits by name: a `winsandbox.Limits`
/// (its attributes) or a dict of keywords; a name a dict has that is no
/// limit is a TypeError. Validated.
fn limits_from(src: &Bound<'_, PyAny>) -> PyResult<Limits> {
    let mut l = Limits::default();
    if let Ok(d) = src.cast::<PyDict>() {
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            let Some(&(field, kind)) = FIELDS.iter().find(|(f, _)| *f == k) else {
                return Err(PyTypeError::new_err(format!("unexpected limit {k:?}")));
            };
            l.set(field, py_value(field, kind, &v)?).map_err(to_py)?;
        }
    } else {
        for (field, kind) in FIELDS {
            let v = src.getattr(field)?;
            l.set(field, py_value(field, kind, &v)?).map_err(to_py)?;
        }
    }
    l.validate().map_err(to_py)?;
    Ok(l)
}

/// Checks limits given as keywords, in Rust, the one place they are checked:
/// returns each limit's value as it will be applied (bytes, seconds, counts,
/// the priority's name, flags), for `winsandbox.Limits` to keep.
#[pyfunction]
fn check_limits<'py>(py: Python<'py>, limits: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    let l = limits_from(limits.as_any())?;
    let out = PyDict::new(py);
    for (field, _) in FIELDS {
        match l.get(field) {
            Value::Unset => out.set_item(field, py.None())?,
            Value::Number(n) => out.set_item(field, n)?,
            Value::Seconds(d) => out.set_item(field, d.as_secs_f64())?,
            Value::Priority(p) => out.set_item(field, p.name())?,
            Value::Flag(b) => out.set_item(field, b)?,
        }
    }
    Ok(out)
}

fn output(field: &'static str, v: &Bound<'_, PyAny>) -> PyResult<Output> {
    if let Ok(n) = v.extract::<i64>() {
        return match n {
            PIPE => Ok(Output::Capture),
            DEVNULL => Ok(Output::Discard),
            _ => Err(PyValueError::new_err(format!(
                "invalid {field}: {n} (use PIPE, DEVNULL or a path)"
            ))),
        };
    }
    let p: std::path::PathBuf = v
        .extract()
        .map_err(|_| PyValueError::new_err(format!("invalid {field}: PIPE, DEVNULL or a path")))?;
    Ok(Output::File(p))
}

#[allow(clippy::too_many_arguments)]
fn command(
    argv: Vec<String>,
    cwd: Option<std::path::PathBuf>,
    env: Option<Vec<(String, Option<String>)>>,
    env_inherit: bool,
    stdin: Option<&Bound<'_, PyAny>>,
    stdout: &Bound<'_, PyAny>,
    stderr: &Bound<'_, PyAny>,
    spawn_path: &str,
    limits: Limits,
    isolation: Isolation,
) -> PyResult<Command> {
    let mut it = argv.into_iter();
    let program = it
        .next()
        .ok_or_else(|| PyValueError::new_err("invalid args: empty argument list"))?;
    if program.is_empty() {
        return Err(PyValueError::new_err(
            "invalid args: the program name is empty",
        ));
    }
    for a in [&program] {
        if a.contains('\0') {
            return Err(PyValueError::new_err(
                "invalid args: embedded NUL character",
            ));
        }
    }
    let args: Vec<String> = it.collect();
    if args.iter().any(|a| a.contains('\0')) {
        return Err(PyValueError::new_err(
            "invalid args: embedded NUL character",
        ));
    }
    let stdin = match stdin {
        None => Stdin::Null,
        Some(s) if s.is_none() => Stdin::Null,
        Some(s) => {
            if let Ok(b) = s.cast::<PyBytes>() {
                Stdin::Bytes(b.as_bytes().to_vec())
            } else {
                Stdin::File(
                    s.extract()
                        .map_err(|_| PyValueError::new_err("invalid stdin: bytes or a path"))?,
                )
            }
        }
    };
    let spawn_path = match spawn_path {
        "auto" => SpawnPath::Auto,
        "job_list" => SpawnPath::JobList,
        "suspended" => SpawnPath::Suspended,
        other => {
            return Err(PyValueError::new_err(format!(
                "invalid spawn_path: {other:?} (auto, job_list, suspended)"
            )))
        }
    };
    Ok(Command {
        program,
        args,
        cwd,
        env: EnvSpec {
            inherit: env_inherit,
            changes: env.unwrap_or_default(),
        },
        stdin,
        stdout: output("stdout", stdout)?,
        stderr: output("stderr", stderr)?,
        limits,
        spawn_path,
        isolation,
        keep_workdir: false,
    })
}

/// What Python passes for a run's isolation: its level, and the paths it
/// may read and write (`_command._confinement`); None is no isolation.
type IsolationArg = Option<(String, Vec<std::path::PathBuf>, Vec<std::path::PathBuf>)>;

/// The isolation a run asks for (checked in Rust, named in the error).
fn isolation_of(arg: IsolationArg) -> PyResult<Isolation> {
    let Some((level, readable, writable)) = arg else {
        return Ok(Isolation::default());
    };
    Ok(Isolation {
        level: Level::parse(&level).map_err(to_py)?,
        readable,
        writable,
    })
}

/// The package's `Outcome[bytes]` for `o`, filled in place: a frozen
/// dataclass's `__init__` for 21 fields was a fifth of the Python layer's
/// cost per run (tests/python/test_run.py checks the fields are Outcome's).
fn outcome_object<'py>(
    py: Python<'py>,
    argv: &[String],
    o: &Outcome,
) -> PyResult<Bound<'py, PyAny>> {
    let class = package_class(py, "Outcome")?;
    let verdict = package_class(py, "Verdict")?.call1((o.verdict().as_str(),))?;
    let obj = py
        .import("builtins")?
        .getattr("object")?
        .call_method1("__new__", (&class,))?;
    let d = obj.getattr("__dict__")?.cast_into::<PyDict>()?;
    d.set_item("args", PyTuple::new(py, argv)?)?;
    d.set_item("verdict", verdict)?;
    d.set_item("mechanism", o.mechanism.map(|m| m.as_str()))?;
    d.set_item("limit", o.limit)?;
    d.set_item("exit_code", o.exit_code)?;
    d.set_item("status", o.status)?;
    d.set_item("pid", o.pid)?;
    d.set_item("cpu_time", o.user_time + o.kernel_time)?;
    d.set_item("user_time", o.user_time)?;
    d.set_item("kernel_time", o.kernel_time)?;
    d.set_item("wall_time", o.wall_time)?;
    d.set_item("peak_memory", o.peak_memory)?;
    d.set_item("peak_job_memory", o.peak_job_memory)?;
    d.set_item("processes", o.processes)?;
    d.set_item("read_bytes", o.read_bytes)?;
    d.set_item("write_bytes", o.write_bytes)?;
    d.set_item("stdout", PyBytes::new(py, &o.stdout))?;
    d.set_item("stderr", PyBytes::new(py, &o.stderr))?;
    d.set_item("truncated", o.truncated)?;
    let na: Vec<Bound<'py, PyTuple>> = o
        .not_applied
        .iter()
        .map(|n| PyTuple::new(py, [n.limit.to_string(), n.reason.clone()]))
        .collect::<PyResult<_>>()?;
    d.set_item("not_applied", PyTuple::new(py, na)?)?;
    d.set_item("isolation", o.isolation.as_str())?;
    d.set_item(
        "workdir",
        o.workdir.as_ref().map(|w| w.to_string_lossy().into_owned()),
    )?;
    d.set_item("error", o.error.clone())?;
    d.set_item("worker", py.None())?; // set by a fleet worker (winsandbox.celery)
    Ok(obj)
}

/// A native object a Python object owns until `close()`; after that, every
/// use is a RuntimeError saying what was closed.
struct Slot<T> {
    inner: Mutex<Option<T>>,
    /// Set by `close`, readable while another thread holds `inner` in a wait.
    closed: AtomicBool,
    what: &'static str,
}

impl<T: Send> Slot<T> {
    fn new(value: T, what: &'static str) -> Self {
        Slot {
            inner: Mutex::new(Some(value)),
            closed: AtomicBool::new(false),
            what,
        }
    }

    fn closed_error(&self) -> PyErr {
        PyRuntimeError::new_err(format!("this {} is closed", self.what))
    }

    /// `f` on the value; a RuntimeError once closed.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> PyResult<R>) -> PyResult<R> {
        let mut g = crate::engine::lock(&self.inner);
        f(g.as_mut().ok_or_else(|| self.closed_error())?)
    }

    /// Drops the value (killing what it owns) without the GIL, once a wait
    /// on another thread lets go of it. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::SeqCst);
        py.detach(|| drop(crate::engine::lock(&self.inner).take()));
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A class of the Python package (`winsandbox._outcome`) that native results
/// are made into, so they are typed once, there.
fn package_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("winsandbox._outcome")?.getattr(name)
}

/// `#[pymethods]` for `$class`, whose `inner` is a [`Slot`], with the methods
/// every such class has: `close` (documented by `$close`), `closed`, and the
/// context manager.
macro_rules! with_close {
    ($class:ident, $close:literal, $($methods:tt)*) => {
        #[pymethods]
        impl $class {
            $($methods)*

            #[doc = $close]
            fn close(&self, py: Python<'_>) {
                self.before_close();
                self.inner.close(py);
            }

            #[getter]
            fn closed(&self) -> bool {
                self.inner.is_closed()
            }

            fn __enter__(slf: Py<Self>) -> Py<Self> {
                slf
            }

            #[pyo3(signature = (*_exc))]
            fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) {
                self.before_close();
                self.inner.close(py);
            }
        }
    };
}

/// A run in progress, carried by the driver thread (`crate::driver`): no
/// thread of the caller's waits on it. `wait()` releases the GIL; dropping
/// or closing it kills the tree.
#[pyclass(module = "winsandbox._winsandbox")]
struct Run {
    done: Arc<Done>,
    /// Kills the tree from any thread while the driver carries the run.
    killer: backend::Killer,
    closed: AtomicBool,
    pid: u32,
    /// The outcome's `args`.
    argv: Vec<String>,
}

impl Run {
    fn check_open(&self) -> PyResult<()> {
        match self.closed.load(Ordering::SeqCst) {
            true => Err(PyRuntimeError::new_err("this run is closed")),
            false => Ok(()),
        }
    }

    /// Kills what still runs and waits (without the GIL) until the driver
    /// has ended the run and freed its handles.
    fn end(&self, py: Python<'_>) {
        if !self.done.is_done() {
            self.killer.kill();
            py.detach(|| self.done.wait(None));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.done.is_done() {
            self.killer.kill();
        }
    }
}

#[pymethods]
impl Run {
    #[getter]
    fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the run is over (its outcome is ready).
    #[getter]
    fn done(&self) -> bool {
        self.done.is_done()
    }

    /// The outcome once the run ended within `timeout` seconds (`None`: wait
    /// until it ends), else `None`. Ctrl-C raises KeyboardInterrupt (the
    /// caller closes the run).
    #[pyo3(signature = (timeout=None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.check_open()?;
        match sliced(py, timeout, |slice| self.done.wait(slice))? {
            Some(r) => Ok(Some(outcome_object(py, &self.argv, &r.map_err(to_py)?)?)),
            None => Ok(None),
        }
    }

    /// Calls `callback()` once the run is over: at once if it is, else on
    /// the driver thread (with the GIL) when it ends. For asyncio, a
    /// callback that hands over to the loop (`call_soon_threadsafe`).
    fn on_done(&self, callback: Py<PyAny>) {
        self.done.on_done(Box::new(move || call_back(callback)));
    }

    /// Ends the whole process tree now (the outcome then says SE, killed),
    /// also while another thread waits on the run.
    fn kill(&self) -> PyResult<()> {
        self.check_open()?;
        self.killer.kill();
        Ok(())
    }

    /// Kills whatever still runs and frees every handle. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::SeqCst);
        self.end(py);
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }
}

/// Whether Python callbacks may still be called from the driver thread,
/// and how many are being called: at exit (`stop_callbacks`, registered
/// with `atexit`) no new one starts and those under way are waited for, so
/// that no native thread takes the GIL while the interpreter shuts down.
static CALLBACKS: Mutex<(bool, usize)> = Mutex::new((true, 0));
static CALLBACKS_IDLE: std::sync::Condvar = std::sync::Condvar::new();

fn call_back(cb: Py<PyAny>) {
    {
        let mut g = crate::engine::lock(&CALLBACKS);
        if !g.0 {
            std::mem::forget(cb); // no GIL may be taken to drop it
            return;
        }
        g.1 += 1;
    }
    let _ = Python::try_attach(|py| {
        if let Err(e) = cb.call0(py) {
            e.write_unraisable(py, None);
        }
        drop(cb);
    });
    let mut g = crate::engine::lock(&CALLBACKS);
    g.1 -= 1;
    if g.1 == 0 {
        CALLBACKS_IDLE.notify_all();
    }
}

/// Stops callbacks from the driver thread (called by `atexit`).
#[pyfunction]
fn stop_callbacks(py: Python<'_>) {
    py.detach(|| {
        let mut g = crate::engine::lock(&CALLBACKS);
        g.0 = false;
        while g.1 > 0 {
            g = CALLBACKS_IDLE.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    });
}

/// Starts `argv[0]` with `argv[1:]` in a new sandbox.
#[pyfunction]
#[pyo3(signature = (
    argv, *, cwd=None, env=None, env_inherit=true, stdin=None, stdout=None,
    stderr=None, spawn_path="auto", limits=None, isolation=None, keep_workdir=false
))]
#[allow(clippy::too_many_arguments)]
fn start(
    py: Python<'_>,
    argv: Vec<String>,
    cwd: Option<std::path::PathBuf>,
    env: Option<Vec<(String, Option<String>)>>,
    env_inherit: bool,
    stdin: Option<&Bound<'_, PyAny>>,
    stdout: Option<Bound<'_, PyAny>>,
    stderr: Option<Bound<'_, PyAny>>,
    spawn_path: &str,
    limits: Option<&Bound<'_, PyAny>>,
    isolation: IsolationArg,
    keep_workdir: bool,
) -> PyResult<Run> {
    let l = limits.map(limits_from).transpose()?.unwrap_or_default();
    let iso = isolation_of(isolation)?;
    let pipe = PIPE.into_pyobject(py)?.into_any();
    let args = argv.clone();
    let mut cmd = command(
        argv,
        cwd,
        env,
        env_inherit,
        stdin,
        stdout.as_ref().unwrap_or(&pipe),
        stderr.as_ref().unwrap_or(&pipe),
        spawn_path,
        l,
        iso,
    )?;
    cmd.keep_workdir = keep_workdir;
    let r = py.detach(|| backend::Running::start(&cmd)).map_err(to_py)?;
    let pid = r.pid();
    let killer = r.killer();
    let done = driver::drive(r).map_err(to_py)?;
    Ok(Run {
        done,
        killer,
        closed: AtomicBool::new(false),
        pid,
        argv: args,
    })
}

/// An interactive run in progress (`crate::interactive`): the solution and
/// the interactor joined by pipes, carried by the driver thread.
#[pyclass(module = "winsandbox._winsandbox")]
struct Interaction {
    inner: Interactive,
    closed: AtomicBool,
    argv: [Vec<String>; 2],
}

#[pymethods]
impl Interaction {
    /// The ids of the solution's and the interactor's main processes.
    #[getter]
    fn pids(&self) -> (u32, u32) {
        let [s, i] = self.inner.pids();
        (s, i)
    }

    #[getter]
    fn done(&self) -> bool {
        self.inner.is_done()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// (verdict, solution outcome, interactor outcome) once both ended
    /// within `timeout` seconds (`None`: wait until they end), else None.
    #[pyo3(signature = (timeout=None))]
    #[allow(clippy::type_complexity)]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(&'static str, Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(PyRuntimeError::new_err("this interactive run is closed"));
        }
        let Some(r) = sliced(py, timeout, |slice| self.inner.wait(slice))? else {
            return Ok(None);
        };
        let x = r.map_err(to_py)?;
        let s = outcome_object(py, &self.argv[0], &x.solution)?;
        let i = outcome_object(py, &self.argv[1], &x.interactor)?;
        Ok(Some((x.verdict.as_str(), s, i)))
    }

    /// Calls `callback()` once both have ended (see `Run.on_done`).
    fn on_done(&self, callback: Py<PyAny>) {
        self.inner.on_done(Box::new(move || call_back(callback)));
    }

    /// Ends both process trees now.
    fn kill(&self) {
        self.inner.kill();
    }

    /// Kills whatever still runs and waits until both are over. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::SeqCst);
        if !self.inner.is_done() {
            self.inner.kill();
            py.detach(|| self.inner.wait(None));
        }
    }
}

/// Starts an interactive run: `solution` and `interactor` (argv lists),
/// each with its own cwd and limits, their stdin and stdout joined by
/// pipes, their stderr captured (or `DEVNULL`, or a path); `codes` maps the
/// interactor's exit codes to verdict names (default: testlib's).
#[pyfunction]
#[pyo3(signature = (
    solution, interactor, *, cwd=None, interactor_cwd=None, env=None,
    env_inherit=true, stderr=None, interactor_stderr=None, limits=None,
    interactor_limits=None, codes=None, isolation=None, interactor_isolation=None
))]
#[allow(clippy::too_many_arguments)]
fn start_interactive(
    py: Python<'_>,
    solution: Vec<String>,
    interactor: Vec<String>,
    cwd: Option<std::path::PathBuf>,
    interactor_cwd: Option<std::path::PathBuf>,
    env: Option<Vec<(String, Option<String>)>>,
    env_inherit: bool,
    stderr: Option<Bound<'_, PyAny>>,
    interactor_stderr: Option<Bound<'_, PyAny>>,
    limits: Option<&Bound<'_, PyAny>>,
    interactor_limits: Option<&Bound<'_, PyAny>>,
    codes: Option<Vec<(i64, String)>>,
    isolation: IsolationArg,
    interactor_isolation: IsolationArg,
) -> PyResult<Interaction> {
    let pipe = PIPE.into_pyobject(py)?.into_any();
    let lim = |l: Option<&Bound<'_, PyAny>>| -> PyResult<Limits> {
        Ok(l.map(limits_from).transpose()?.unwrap_or_default())
    };
    let make = |argv: &[String], cwd, err: &Option<Bound<'_, PyAny>>, l, iso| {
        command(
            argv.to_vec(),
            cwd,
            env.clone(),
            env_inherit,
            None,
            &pipe,
            err.as_ref().unwrap_or(&pipe),
            "auto",
            l,
            iso,
        )
    };
    let sc = make(
        &solution,
        cwd,
        &stderr,
        lim(limits)?,
        isolation_of(isolation)?,
    )?;
    let ic = make(
        &interactor,
        interactor_cwd,
        &interactor_stderr,
        lim(interactor_limits)?,
        isolation_of(interactor_isolation)?,
    )?;
    let codes = match codes {
        None => crate::decide::TESTLIB_CODES.to_vec(),
        Some(c) => c
            .into_iter()
            .map(|(code, name)| {
                Verdict::ALL
                    .into_iter()
                    .find(|v| v.as_str() == name)
                    .map(|v| (code, v))
                    .ok_or_else(|| {
                        PyValueError::new_err(format!("invalid codes: {name:?} is no verdict"))
                    })
            })
            .collect::<PyResult<_>>()?,
    };
    let inner = py
        .detach(|| Interactive::start(&sc, &ic, &codes))
        .map_err(to_py)?;
    Ok(Interaction {
        inner,
        closed: AtomicBool::new(false),
        argv: [solution, interactor],
    })
}

/// A process started in a Sandbox.
#[pyclass(module = "winsandbox._winsandbox")]
struct Process {
    inner: backend::Child,
}

#[pymethods]
impl Process {
    #[getter]
    fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Ends this process (not its children: they stay in the job).
    fn kill(&self) -> PyResult<()> {
        self.inner.kill().map_err(to_py)
    }

    /// The exit code once it ended within `timeout` seconds, else None.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<i64>> {
        sliced(py, timeout, |slice| self.inner.wait(slice).transpose())?
            .transpose()
            .map_err(to_py)
    }
}

/// A long-lived job: start several processes into it, read its accounting and
/// process list while they run, terminate it.
#[pyclass(module = "winsandbox._winsandbox", name = "Sandbox")]
struct NativeSandbox {
    inner: Slot<backend::Sandbox>,
}

impl NativeSandbox {
    fn before_close(&self) {}
}

impl NativeSandbox {
    fn with<T>(&self, f: impl FnOnce(&backend::Sandbox) -> PyResult<T>) -> PyResult<T> {
        self.inner.with(|sb| f(sb))
    }
}

with_close! {
    NativeSandbox,
    "Kills every process of the job and frees it. Idempotent.",
    #[new]
    #[pyo3(signature = (limits=None, isolation=None))]
    fn new(py: Python<'_>, limits: Option<&Bound<'_, PyAny>>, isolation: IsolationArg) -> PyResult<Self> {
        let l = limits.map(limits_from).transpose()?.unwrap_or_default();
        let iso = isolation_of(isolation)?;
        let mut sb = backend::Sandbox::new(&l).map_err(to_py)?;
        py.detach(|| sb.isolate(iso)).map_err(to_py)?;
        Ok(NativeSandbox {
            inner: Slot::new(sb, "sandbox"),
        })
    }

    /// Starts a process in the job; stdio: None (null device) or file paths.
    #[pyo3(signature = (argv, *, cwd=None, env=None, env_inherit=true, stdin=None, stdout=None, stderr=None, spawn_path="auto"))]
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        py: Python<'_>,
        argv: Vec<String>,
        cwd: Option<std::path::PathBuf>,
        env: Option<Vec<(String, Option<String>)>>,
        env_inherit: bool,
        stdin: Option<std::path::PathBuf>,
        stdout: Option<std::path::PathBuf>,
        stderr: Option<std::path::PathBuf>,
        spawn_path: &str,
    ) -> PyResult<Process> {
        let devnull = DEVNULL.into_pyobject(py)?.into_any();
        let o = |p: Option<std::path::PathBuf>| -> PyResult<Bound<'_, PyAny>> {
            Ok(match p {
                Some(p) => p.into_pyobject(py)?.into_any(),
                None => devnull.clone(),
            })
        };
        let stdin_obj = stdin
            .map(|p| p.into_pyobject(py))
            .transpose()?
            .map(|b| b.into_any());
        let cmd = command(
            argv,
            cwd,
            env,
            env_inherit,
            stdin_obj.as_ref(),
            &o(stdout)?,
            &o(stderr)?,
            spawn_path,
            Limits::default(),
            Isolation::default(),
        )?;
        self.with(|sb| {
            Ok(Process {
                inner: py.detach(|| sb.spawn(&cmd)).map_err(to_py)?,
            })
        })
    }

    /// What each live process of the job uses now: a dict per process with
    /// pid, name, working_set, peak_working_set, private_memory, handles,
    /// user_time, kernel_time.
    fn processes<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let ps = self.with(|sb| py.detach(|| sb.processes()).map_err(to_py))?;
        let class = package_class(py, "ProcessInfo")?;
        // Positional, in the dataclass's field order (test_sandbox_cli checks the values).
        ps.into_iter()
            .map(|p| {
                let fields = (p.pid, p.name, p.working_set, p.peak_working_set);
                let more = (p.private_memory, p.handles, p.user_time, p.kernel_time);
                class.call1(fields.into_pyobject(py)?.add(more.into_pyobject(py)?)?.cast_into::<PyTuple>()?)
            })
            .collect()
    }

    /// The ids of the processes in the job now.
    fn process_ids(&self) -> PyResult<Vec<u32>> {
        self.with(|sb| sb.process_ids().map_err(to_py))
    }

    /// What the job used so far: cpu_time (s), user_time, kernel_time,
    /// peak_memory, peak_job_memory, processes, active_processes,
    /// read_bytes, write_bytes.
    fn accounting<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let a = self.with(|sb| sb.accounting().map_err(to_py))?;
        let (u, k) = (a.user_time().as_secs_f64(), a.kernel_time().as_secs_f64());
        // Positional, in the dataclass's field order.
        let times = (u + k, u, k, a.peak_process_memory, a.peak_job_memory);
        let counts = (a.total_processes, a.active_processes, a.read_bytes, a.write_bytes);
        let args = times.into_pyobject(py)?.add(counts.into_pyobject(py)?)?;
        package_class(py, "Accounting")?.call1(args.cast_into::<PyTuple>()?)
    }

    /// Ends every process in the job (Windows: with `exit_code`).
    #[pyo3(signature = (exit_code=1))]
    fn terminate(&self, exit_code: u32) -> PyResult<()> {
        self.with(|sb| sb.terminate(exit_code).map_err(to_py))
    }

    /// The limit the monitor saw crossed, if any: (verdict, limit, mechanism).
    fn hit(&self) -> PyResult<Option<(&'static str, &'static str, &'static str)>> {
        self.with(|sb| {
            Ok(sb
                .hit()
                .map(|h| (h.verdict.as_str(), h.limit, h.mechanism.as_str())))
        })
    }
}

/// The CLI (`winsandbox run ...`); returns the exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, args: Vec<String>) -> i32 {
    // Ctrl-C (and whatever signal handler the caller set) ends the run at
    // once: the check runs Python's handlers, and any exception they raise
    // stops the run (it is not raised further: the status says it).
    py.detach(|| {
        crate::cli::main_until(
            &args,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
            &mut || Python::attach(|py| py.check_signals().is_err()),
        )
    })
}

/// Wine's version when running under Wine, else None.
#[pyfunction]
fn wine_version() -> Option<String> {
    crate::wine_version()
}

/// "windows" or "posix".
#[pyfunction]
fn backend_name() -> &'static str {
    crate::BACKEND
}

#[pymodule]
fn _winsandbox(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PIPE", PIPE)?;
    m.add("DEVNULL", DEVNULL)?;
    m.add("SandboxError", m.py().get_type::<SandboxError>())?;
    m.add("IsolationError", m.py().get_type::<IsolationError>())?;
    m.add_function(wrap_pyfunction!(sandbox_error, m)?)?;
    m.add_class::<Run>()?;
    m.add_class::<Process>()?;
    m.add_class::<NativeSandbox>()?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_class::<Interaction>()?;
    m.add_function(wrap_pyfunction!(start_interactive, m)?)?;
    m.add_function(wrap_pyfunction!(check_limits, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(wine_version, m)?)?;
    m.add_function(wrap_pyfunction!(backend_name, m)?)?;
    m.add_function(wrap_pyfunction!(stop_callbacks, m)?)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (m.getattr("stop_callbacks")?,))?;
    Ok(())
}
