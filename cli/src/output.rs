//! Output files (`--json`, `--csv`, `--svg`). They are created before any
//! measurement starts, so a path that cannot be written fails at once
//! rather than after the whole suite has run; a file that was created but
//! never written (the run failed) is removed again.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

struct Target {
    path: PathBuf,
    file: Option<File>,
}

impl Target {
    fn create(path: &Path) -> Result<Target> {
        let file = File::create(path).with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(Target { path: path.to_path_buf(), file: Some(file) })
    }

    fn write(&mut self, write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>) -> Result<()> {
        let Some(file) = self.file.take() else { return Ok(()) };
        let mut w = BufWriter::new(&file);
        write(&mut w)
            .and_then(|()| w.flush().map_err(Into::into))
            .with_context(|| format!("cannot write `{}`", self.path.display()))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Created but never written: do not leave an empty file behind.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The output files the user asked for.
#[derive(Default)]
pub struct Outputs {
    json: Option<Target>,
    csv: Option<Target>,
    svg: Option<Target>,
}

impl Outputs {
    pub fn open(json: Option<&Path>, csv: Option<&Path>, svg: Option<&Path>) -> Result<Outputs> {
        Ok(Outputs {
            json: json.map(Target::create).transpose()?,
            csv: csv.map(Target::create).transpose()?,
            svg: svg.map(Target::create).transpose()?,
        })
    }

    pub fn json_path(&self) -> Option<&Path> {
        self.json.as_ref().map(|t| t.path.as_path())
    }

    pub fn csv_path(&self) -> Option<&Path> {
        self.csv.as_ref().map(|t| t.path.as_path())
    }

    pub fn svg_path(&self) -> Option<&Path> {
        self.svg.as_ref().map(|t| t.path.as_path())
    }

    pub fn write_json(&mut self, value: &impl serde::Serialize) -> Result<()> {
        match self.json.as_mut() {
            Some(t) => t.write(|w| {
                serde_json::to_writer_pretty(&mut *w, value)?;
                writeln!(w)?;
                Ok(())
            }),
            None => Ok(()),
        }
    }

    pub fn write_csv(&mut self, text: &str) -> Result<()> {
        match self.csv.as_mut() {
            Some(t) => t.write(|w| Ok(w.write_all(text.as_bytes())?)),
            None => Ok(()),
        }
    }

    pub fn write_svg(&mut self, text: &str) -> Result<()> {
        match self.svg.as_mut() {
            Some(t) => t.write(|w| Ok(w.write_all(text.as_bytes())?)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_path_fails_early_with_its_name() {
        let err = Outputs::open(Some(Path::new("/nonexistent-dir/x.json")), None, None).err().unwrap();
        assert!(format!("{err:#}").contains("cannot write `/nonexistent-dir/x.json`"));
    }

    #[test]
    fn unwritten_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.csv"));
        {
            let mut out = Outputs::open(Some(&a), Some(&b), None).unwrap();
            out.write_json(&[1, 2]).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "[\n  1,\n  2\n]\n");
        assert!(!b.exists());
    }
}
