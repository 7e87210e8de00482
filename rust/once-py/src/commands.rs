//! Running steps' commands (`once_core::spawn`) with the GIL released while they run.

use std::path::PathBuf;
use std::time::Duration;

use once_core::spawn;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::CoreResult;

/// A command's environment, converted once and shared by every command run with it.
#[pyclass(frozen, module = "once._core")]
pub struct CommandEnv {
    inner: spawn::CommandEnv,
}

#[pymethods]
impl CommandEnv {
    #[new]
    fn new(py: Python<'_>, variables: Vec<(String, String)>) -> CommandEnv {
        CommandEnv {
            inner: py.detach(|| spawn::CommandEnv::new(variables)),
        }
    }

    /// The shell commands start with.
    #[getter]
    fn shell(&self) -> PathBuf {
        self.inner.shell().to_path_buf()
    }
}

/// How a command ended, and its output.
#[pyclass(frozen, module = "once._core")]
pub struct CommandOutput {
    /// Its exit code, or minus the signal that ended it.
    #[pyo3(get)]
    exit_code: i32,
    /// Its stdout and stderr, interleaved as written.
    #[pyo3(get)]
    log: Py<PyBytes>,
}

/// The commands of a run.
#[pyclass(frozen, module = "once._core")]
pub struct Commands {
    inner: spawn::Commands,
}

#[pymethods]
impl Commands {
    #[new]
    fn new() -> Commands {
        Commands {
            inner: spawn::Commands::new(),
        }
    }

    /// Run `sh -c cmd` in `cwd` (see the stub).
    #[pyo3(signature = (cmd, cwd, env, live = None))]
    fn run(
        &self,
        py: Python<'_>,
        cmd: &str,
        cwd: PathBuf,
        env: &CommandEnv,
        live: Option<Py<PyAny>>,
    ) -> PyResult<Option<CommandOutput>> {
        // What `live` raised, raised here at once: the command's output is read no further,
        // and the command is left for `stop`, as the caller is on its way out.
        let mut raised: Option<PyErr> = None;
        let ran: CoreResult<Option<spawn::CommandOutput>> = py.detach(|| {
            let mut show = |data: &[u8]| {
                // The GIL is taken only for the call: a command whose output nobody shows
                // live never takes it.
                Python::attach(|py| {
                    let Some(live) = live.as_ref() else {
                        return false;
                    };
                    match live.call1(py, (PyBytes::new(py, data),)) {
                        Ok(_) => true,
                        Err(err) => {
                            raised = Some(err);
                            false
                        }
                    }
                })
            };
            let show: Option<spawn::LiveOutput<'_>> = if live.is_some() {
                Some(&mut show)
            } else {
                None
            };
            Ok(self.inner.run(cmd, &cwd, &env.inner, show)?)
        });
        let ran = ran?;
        if let Some(err) = raised {
            return Err(err);
        }
        Ok(ran.map(|output| CommandOutput {
            exit_code: output.exit_code,
            log: PyBytes::new(py, &output.log).unbind(),
        }))
    }

    /// Stop every running command and its process group, and start none after.
    fn stop(&self, py: Python<'_>, grace_seconds: f64) {
        let grace = Duration::from_secs_f64(grace_seconds.max(0.0));
        py.detach(|| self.inner.stop(grace));
    }
}
