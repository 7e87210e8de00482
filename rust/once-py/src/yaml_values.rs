//! YAML as plain Python values, for `plan/lockfile_formats.py` (yarn 2+ lockfiles).

use once_core::yaml_values::{self, Value};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

/// The one document of a YAML stream as dicts, lists and strings (every scalar a string).
/// Parsed with the GIL released: bytes are immutable, so reading them without it is sound.
#[pyfunction]
pub fn load_yaml(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
    let value = py
        .detach(|| yaml_values::load(data))
        .ok_or_else(|| PyValueError::new_err("not one YAML document of plain values"))?;
    Ok(python_value(py, value)?.unbind())
}

fn python_value(py: Python<'_>, value: Value) -> PyResult<Bound<'_, PyAny>> {
    Ok(match value {
        Value::Text(text) => PyString::new(py, &text).into_any(),
        Value::List(items) => {
            let items = items
                .into_iter()
                .map(|item| python_value(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Map(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, python_value(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
