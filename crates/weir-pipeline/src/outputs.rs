//! Where a pipeline writes: each sink's and the dead-letter output's destination (for the run's
//! summary), and the check that no two outputs, or an output and the input, are the same file.

use crate::spec::{SinkKind, SinkSpec, SourceConfig};
use crate::{Pipeline, PipelineError};
use std::path::{Component, Path, PathBuf};

/// One output of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The key in the pipeline file (`sink`, `sinks[1]`, `dead_letter`); also the name of its
    /// operator in the run's metrics.
    pub key: String,
    pub kind: SinkKind,
    /// Where the records go, for people: a path, `standard output`, a table or stream and its
    /// server (URLs without user name or password).
    pub destination: String,
}

impl Pipeline {
    /// The pipeline's outputs: its sinks in order, then the dead-letter output.
    pub fn outputs(&self) -> Vec<Output> {
        self.output_specs()
            .into_iter()
            .map(|(key, spec)| Output {
                destination: destination(self, spec),
                kind: spec.kind(),
                key,
            })
            .collect()
    }

    fn output_specs(&self) -> Vec<(String, &SinkSpec)> {
        let mut specs: Vec<(String, &SinkSpec)> = Vec::new();
        if let Some(sink) = &self.spec.sink {
            specs.push(("sink".into(), sink));
        }
        for (i, sink) in self.spec.sinks.iter().flatten().enumerate() {
            specs.push((format!("sinks[{i}]"), sink));
        }
        if let Some(dead) = &self.spec.dead_letter {
            specs.push(("dead_letter".into(), dead));
        }
        specs
    }
}

fn destination(p: &Pipeline, spec: &SinkSpec) -> String {
    spec.config
        .connector()
        .destination(&crate::source::PipelineContext(p))
}

/// The file a file sink writes (`None` for standard output and the other sinks).
fn output_file(p: &Pipeline, spec: &SinkSpec) -> Option<PathBuf> {
    let path = spec.config.connector().output_file()?;
    Some(crate::build::resolve(p, path))
}

/// Refuses a pipeline with two outputs writing the same file (one would overwrite the other's
/// records), or an output writing its input file (the sink truncates the input before it is
/// read). Paths are compared as the files they name: symbolic links and `..` resolved.
pub(crate) fn check_outputs_do_not_clash(p: &Pipeline) -> Result<(), PipelineError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for (key, source) in p.source_specs() {
        if let SourceConfig::File(file) = &source.config
            && file.path != Path::new("-")
        {
            let path = &file.path;
            files.push((key, canonical(&crate::build::resolve(p, path))));
        }
    }
    for (key, spec) in p.output_specs() {
        let Some(path) = output_file(p, spec) else {
            continue;
        };
        let canonical = canonical(&path);
        if let Some((other, _)) = files.iter().find(|(_, f)| *f == canonical) {
            let what = if other == "source" || other.starts_with("sources.") {
                "it would truncate the input before reading it"
            } else {
                "one would overwrite the other's records"
            };
            return Err(p.error_at(
                &format!("{key}.path"),
                format!(
                    "`{key}` writes {}, the same file as `{other}`: {what}; give each output its own file",
                    path.display()
                ),
            ));
        }
        files.push((key, canonical));
    }
    Ok(())
}

/// The file `path` names: canonical if it exists; else its nearest existing ancestor made
/// canonical, with the rest appended (an output file is often created by the run).
fn canonical(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Lexically first, so that `missing/../x` names `x`.
    let mut normal = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(found) = existing.canonicalize() {
            let mut result = found;
            for part in rest.iter().rev() {
                result.push(part);
            }
            return result;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, dir: &Path) -> Pipeline {
        let file = dir.join("p.yaml");
        std::fs::write(&file, yaml).unwrap();
        Pipeline::load(&file).unwrap()
    }

    #[test]
    fn credentials_never_appear_in_destinations() {
        let yaml = "name: t\nsource: { type: stdin }\nsinks:\n  - { type: redis_stream, url: \"redis://:secret@127.0.0.1:6390/0\", stream: s }\n  - { type: clickhouse, url: \"http://127.0.0.1:8124\", table: t }\n";
        let p = crate::Pipeline::parse(yaml, "p.yaml").unwrap();
        let destinations: Vec<String> = p.outputs().into_iter().map(|o| o.destination).collect();
        assert_eq!(
            destinations,
            [
                "Redis stream s at redis://127.0.0.1:6390/0",
                "ClickHouse table t at http://127.0.0.1:8124"
            ]
        );
    }

    #[test]
    fn same_file_through_a_link_or_dots_is_a_clash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.jsonl"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("in.jsonl"), dir.path().join("link.jsonl"))
            .unwrap();
        let yaml = |sink: &str, dead: &str| {
            format!(
                "source: {{ type: file, path: in.jsonl }}\nsink: {{ type: file, path: {sink} }}\n\
                 dead_letter: {{ type: file, path: {dead} }}\n"
            )
        };
        let clash = |sink: &str, dead: &str| {
            check_outputs_do_not_clash(&parse(&yaml(sink, dead), dir.path()))
                .err()
                .map(|e| e.to_string())
        };
        let e = clash("link.jsonl", "dead.jsonl").unwrap();
        assert!(e.contains("sink.path") && e.contains("`source`"), "{e}");
        let e = clash("out.jsonl", "sub/../out.jsonl").unwrap();
        assert!(
            e.contains("dead_letter.path") && e.contains("`sink`"),
            "{e}"
        );
        let e = clash("new/out.jsonl", "new/./out.jsonl").unwrap();
        assert!(e.contains("dead_letter"), "{e}");
        assert_eq!(clash("out.jsonl", "dead.jsonl"), None);
    }
}
