//! The shared libraries a dynamically linked binary needs, found the way initramfs builders
//! (dracut, initramfs-tools) find them: read the ELF program interpreter (`PT_INTERP`) and
//! `DT_NEEDED` entries, resolve each soname through `DT_RUNPATH`/`DT_RPATH`, the multiarch
//! library directories and `/etc/ld.so.conf.d`, and repeat for every library found.
//!
//! Libraries loaded with `dlopen` are invisible to this; [`crate::build`] names the few that
//! matter explicitly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use crate::error::Error;

/// What one ELF file asks of the dynamic loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfDeps {
    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`); none for static binaries
    /// and libraries.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` sonames, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` directories (`$ORIGIN` expanded).
    pub search: Vec<String>,
    /// The ELF machine (`e_machine`), to skip libraries of another architecture.
    pub machine: u16,
}

/// Reads the dependencies of `path`; `Ok(None)` when it is not an ELF file (a script).
pub fn read_deps(path: &Path) -> Result<Option<ElfDeps>, Error> {
    let bytes = std::fs::read(path).map_err(|err| Error::Read {
        path: path.to_owned(),
        err,
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = Elf::parse(&bytes).map_err(|e| Error::Elf {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let origin = path
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut search = Vec::new();
    for list in elf.runpaths.iter().chain(elf.rpaths.iter()) {
        for dir in list.split(':').filter(|d| !d.is_empty()) {
            search.push(
                dir.replace("${ORIGIN}", &origin)
                    .replace("$ORIGIN", &origin),
            );
        }
    }
    Ok(Some(ElfDeps {
        interpreter: elf.interpreter.map(str::to_owned),
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        search,
        machine: elf.header.e_machine,
    }))
}

/// Finds libraries in a list of directories.
#[derive(Debug, Clone)]
pub struct Resolver {
    dirs: Vec<PathBuf>,
}

impl Resolver {
    /// Searches exactly `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Resolver {
        Resolver { dirs }
    }

    /// The host's library path: the multiarch directories, the directories listed in
    /// `/etc/ld.so.conf.d/*.conf`, then `/lib64`, `/usr/lib64`, `/lib`, `/usr/lib`.
    pub fn host() -> Resolver {
        let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
        let mut dirs: Vec<PathBuf> = vec![
            Path::new("/lib").join(&triplet),
            Path::new("/usr/lib").join(&triplet),
        ];
        if let Ok(rd) = std::fs::read_dir("/etc/ld.so.conf.d") {
            let mut confs: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            confs.sort();
            for conf in confs {
                let text = std::fs::read_to_string(&conf).unwrap_or_default();
                for line in text.lines().map(str::trim) {
                    if line.starts_with('/') {
                        dirs.push(PathBuf::from(line));
                    }
                }
            }
        }
        for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
            dirs.push(PathBuf::from(d));
        }
        let mut seen = BTreeSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        Resolver { dirs }
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn find(&self, soname: &str, deps: &ElfDeps) -> Option<PathBuf> {
        if soname.contains('/') {
            let p = PathBuf::from(soname);
            return p.exists().then_some(p);
        }
        let extra = deps.search.iter().map(PathBuf::from);
        for dir in extra.chain(self.dirs.iter().cloned()) {
            let candidate = dir.join(soname);
            if !candidate.is_file() {
                continue;
            }
            // A library of another architecture (i386 beside x86_64) is skipped, as ld.so does.
            match read_deps(&candidate) {
                Ok(Some(d)) if d.machine == deps.machine => return Some(candidate),
                _ => continue,
            }
        }
        None
    }

    /// Every library (and loader) the given binaries need, transitively, as the paths they
    /// were found at (`/lib/x86_64-linux-gnu/libc.so.6`), each with the first binary that
    /// needed it. Non-ELF files and static binaries add nothing.
    pub fn closure(&self, binaries: &[PathBuf]) -> Result<BTreeMap<PathBuf, PathBuf>, Error> {
        let mut found: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        let mut todo: Vec<PathBuf> = binaries.to_vec();
        let mut done: BTreeSet<PathBuf> = BTreeSet::new();
        while let Some(bin) = todo.pop() {
            if !done.insert(bin.clone()) {
                continue;
            }
            let Some(deps) = read_deps(&bin)? else {
                continue;
            };
            if let Some(interp) = &deps.interpreter {
                let p = PathBuf::from(interp);
                if !p.exists() {
                    return Err(Error::MissingLibrary {
                        binary: bin.clone(),
                        soname: interp.clone(),
                        dirs: vec!["/".into()],
                    });
                }
                found.entry(p.clone()).or_insert_with(|| bin.clone());
                todo.push(p);
            }
            for soname in &deps.needed {
                let lib = self
                    .find(soname, &deps)
                    .ok_or_else(|| Error::MissingLibrary {
                        binary: bin.clone(),
                        soname: soname.clone(),
                        dirs: deps
                            .search
                            .iter()
                            .cloned()
                            .chain(self.dirs.iter().map(|d| d.display().to_string()))
                            .collect(),
                    })?;
                found.entry(lib.clone()).or_insert_with(|| bin.clone());
                todo.push(lib);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(libs: &BTreeMap<PathBuf, PathBuf>) -> Vec<String> {
        libs.keys()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    /// A real dynamically linked binary of the host: its loader and libc, found on disk.
    #[test]
    fn resolves_a_real_binary() -> Result<(), Error> {
        let ls = PathBuf::from("/bin/ls");
        let deps = read_deps(&ls)?.ok_or_else(|| Error::Elf {
            path: ls.clone(),
            message: "not ELF".into(),
        })?;
        assert!(deps.needed.iter().any(|n| n == "libc.so.6"), "{deps:?}");
        let interp = deps.interpreter.clone().unwrap_or_default();
        assert!(interp.contains("ld-linux"), "{deps:?}");

        let libs = Resolver::host().closure(std::slice::from_ref(&ls))?;
        let names = names(&libs);
        assert!(names.iter().any(|n| n == "libc.so.6"), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{names:?}");
        // ls needs libselinux on Debian, which needs libpcre2: the closure is transitive.
        if names.iter().any(|n| n.starts_with("libselinux")) {
            assert!(names.iter().any(|n| n.starts_with("libpcre2")), "{names:?}");
        }
        for path in libs.keys() {
            assert!(path.is_file(), "{}", path.display());
        }
        Ok(())
    }

    #[test]
    fn scripts_need_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("s.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n")?;
        assert_eq!(read_deps(&script)?, None);
        assert!(Resolver::host().closure(&[script])?.is_empty());
        Ok(())
    }

    #[test]
    fn a_missing_library_names_the_binary_and_the_dirs() {
        let r = Resolver::new(vec![PathBuf::from("/nonexistent-lib-dir")]);
        match r.closure(&[PathBuf::from("/bin/ls")]) {
            Err(Error::MissingLibrary { binary, dirs, .. }) => {
                assert_eq!(binary, PathBuf::from("/bin/ls"));
                assert!(dirs.iter().any(|d| d == "/nonexistent-lib-dir"), "{dirs:?}");
            }
            other => panic!("expected MissingLibrary, got {other:?}"),
        }
    }
}
