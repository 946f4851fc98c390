//! Reading policy files from disk: the I/O edge of policy loading.
//!
//! `--policies` names a file or a directory. In a directory, every `*.yaml` / `*.yml` file is
//! read (symlinks followed, so a mounted ConfigMap works), except hidden entries (`..data`),
//! policy test suites (`*.test.yaml`, `*.test.yml`) and `kustomization.yaml` (which packages the
//! policies as a ConfigMap for `deploy/`). Subdirectories are not read.

use std::path::{Path, PathBuf};

use crate::policy::{LoadError, LoadErrors, PolicySet, Source};

/// Largest policy file read, in bytes.
pub const MAX_POLICY_FILE_BYTES: u64 = 1024 * 1024;

/// Read and compile every policy file under `path`.
pub fn load(path: &Path) -> Result<PolicySet, LoadErrors> {
    let sources = read_sources(path)?;
    PolicySet::from_sources(&sources)
}

/// The policy files under `path`, in name order.
pub fn read_sources(path: &Path) -> Result<Vec<Source>, LoadErrors> {
    let io_error = |file: &Path, message: String| {
        LoadErrors(vec![LoadError {
            file: file.display().to_string(),
            line: None,
            field: None,
            message,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e.to_string()))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|e| io_error(path, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(path, e.to_string()))?;
            let p = entry.path();
            if is_policy_file_name(&p) && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };

    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match read_one(&file) {
            Ok(text) => sources.push(Source {
                path: file.display().to_string(),
                text,
            }),
            Err(message) => errors.extend(io_error(&file, message).0),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(LoadErrors(errors))
    }
}

pub fn is_policy_file_name(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".test.yaml")
        && !name.ends_with(".test.yml")
        && !matches!(name, "kustomization.yaml" | "kustomization.yml")
}

fn read_one(file: &Path) -> Result<String, String> {
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if size > MAX_POLICY_FILE_BYTES {
        return Err(format!(
            "file is {size} bytes, more than the limit of {MAX_POLICY_FILE_BYTES} bytes"
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "file is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_files_are_policies() {
        assert!(is_policy_file_name(Path::new("p/a.yaml")));
        assert!(is_policy_file_name(Path::new("p/a.yml")));
        assert!(!is_policy_file_name(Path::new("p/a.test.yaml")));
        assert!(!is_policy_file_name(Path::new("p/..data")));
        assert!(!is_policy_file_name(Path::new("p/.hidden.yaml")));
        assert!(!is_policy_file_name(Path::new("p/README.md")));
    }
}
