//! Kernel modules for the initramfs: names resolved to files with their dependencies, in the
//! order they must be loaded, from the kernel's `modules.dep` (plus `modules.alias` for names
//! such as `crc32c` and `modules.builtin` for what needs no file).
//!
//! `modules.dep` lines are `path: dep1 dep2 ...` where the list is already transitive and
//! ordered so that the last one is loaded first (modprobe's order); paths are relative to
//! `/lib/modules/VERSION/`. A module's name is its file name without `.ko[.xz|.zst|.gz]`,
//! with `-` read as `_`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A module's name from its path: `kernel/arch/x86/crypto/crc32c-intel.ko.xz` → `crc32c_intel`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Names a user gives (`virtio-blk`, `virtio_blk`) in their canonical form.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module database of one kernel.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// name → (path, dependency paths as listed).
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// path → name, for dependencies.
    names: BTreeMap<String, String>,
    /// Built-in module names.
    builtin: BTreeSet<String>,
    /// alias → module names (exact aliases only, not the wildcard device aliases).
    aliases: BTreeMap<String, Vec<String>>,
    /// Every `alias` line as read (wildcards too), for [`ModuleIndex::alias_text_for`].
    alias_lines: Vec<(String, String)>,
}

/// The modules to put in the image, in load order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Module file paths (relative to the modules dir), dependencies before dependents.
    pub load_order: Vec<String>,
    /// Requested names that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Requested names this kernel does not have at all.
    pub missing: Vec<String>,
}

impl ModuleIndex {
    /// Parses a `modules.dep` text; `path` names the file in errors.
    pub fn parse_dep(text: &str, path: &Path) -> Result<ModuleIndex, Error> {
        let mut index = ModuleIndex::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((module, deps)) = line.split_once(':') else {
                return Err(Error::ModulesDep {
                    path: path.to_owned(),
                    line: i + 1,
                    message: format!("expected `module.ko: deps...`, found {line:?}"),
                });
            };
            let module = module.trim();
            if !module.contains(".ko") {
                return Err(Error::ModulesDep {
                    path: path.to_owned(),
                    line: i + 1,
                    message: format!("{module:?} is not a module file (.ko)"),
                });
            }
            let name = module_name(module);
            let deps: Vec<String> = deps.split_whitespace().map(str::to_owned).collect();
            index.names.insert(module.to_owned(), name.clone());
            index.deps.insert(name, (module.to_owned(), deps));
        }
        Ok(index)
    }

    /// Adds `modules.builtin` (one path per line).
    pub fn add_builtin(&mut self, text: &str) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.builtin.insert(module_name(line));
        }
    }

    /// Adds the exact (non-wildcard) aliases of `modules.alias` (`alias NAME MODULE`).
    pub fn add_aliases(&mut self, text: &str) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("alias") {
                continue;
            }
            let (Some(alias), Some(module)) = (words.next(), words.next()) else {
                continue;
            };
            self.alias_lines.push((alias.to_owned(), normalize(module)));
            if alias.contains(['*', '?', '[']) {
                continue;
            }
            self.aliases
                .entry(normalize(alias))
                .or_default()
                .push(normalize(module));
        }
    }

    /// Reads `modules.dep`, and `modules.builtin` and `modules.alias` when present, from a
    /// kernel's modules directory (`/lib/modules/VERSION`).
    pub fn load(dir: &Path) -> Result<ModuleIndex, Error> {
        let dep = dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep).map_err(|err| Error::Read {
            path: dep.clone(),
            err,
        })?;
        let mut index = ModuleIndex::parse_dep(&text, &dep)?;
        if let Ok(text) = std::fs::read_to_string(dir.join("modules.builtin")) {
            index.add_builtin(&text);
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("modules.alias")) {
            index.add_aliases(&text);
        }
        Ok(index)
    }

    /// Whether the kernel has a module of that name (as a file or built in).
    pub fn knows(&self, name: &str) -> bool {
        let n = normalize(name);
        self.deps.contains_key(&n) || self.builtin.contains(&n) || self.aliases.contains_key(&n)
    }

    /// The module files for `names` and everything they depend on, dependencies first.
    /// A name may be an exact alias (`crc32c` gives every module providing it).
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Resolution {
        let mut res = Resolution::default();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for name in names {
            let name = normalize(name.as_ref());
            if self.deps.contains_key(&name) {
                self.visit(&name, &mut seen, &mut res.load_order);
            } else if self.builtin.contains(&name) {
                res.builtin.push(name);
            } else if let Some(providers) = self.aliases.get(&name) {
                let mut any = false;
                for p in providers {
                    if self.deps.contains_key(p) {
                        self.visit(p, &mut seen, &mut res.load_order);
                        any = true;
                    } else if self.builtin.contains(p) {
                        any = true;
                    }
                }
                if !any {
                    res.missing.push(name);
                }
            } else {
                res.missing.push(name);
            }
        }
        res
    }

    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        let Some((path, deps)) = self.deps.get(name) else {
            return;
        };
        // The list is transitive, last loaded first.
        for dep in deps.iter().rev() {
            let dep_name = self
                .names
                .get(dep)
                .cloned()
                .unwrap_or_else(|| module_name(dep));
            self.visit(&dep_name, seen, order);
        }
        order.push(path.clone());
    }

    /// `modules.alias` restricted to the modules of `paths`: busybox modprobe resolves the
    /// kernel's requests (`crypto-crc32c`, `md-level-1`, device aliases) with it.
    pub fn alias_text_for(&self, paths: &BTreeSet<String>) -> String {
        let names: BTreeSet<String> = paths.iter().map(|p| module_name(p)).collect();
        let mut out = String::new();
        for (alias, module) in &self.alias_lines {
            if names.contains(module) {
                out.push_str(&format!("alias {alias} {module}\n"));
            }
        }
        out
    }

    /// `modules.dep` restricted to `paths` (what the image's busybox modprobe reads).
    pub fn dep_text_for(&self, paths: &BTreeSet<String>) -> String {
        let mut out = String::new();
        for (path, deps) in self.deps.values() {
            if paths.contains(path) {
                out.push_str(path);
                out.push(':');
                for d in deps {
                    out.push(' ');
                    out.push_str(d);
                }
                out.push('\n');
            }
        }
        out
    }
}

/// Where a kernel's modules live: `/lib/modules/VERSION` for `/boot/vmlinuz-VERSION`.
pub fn modules_dir_for(kernel: &Path) -> Option<PathBuf> {
    let file = kernel.file_name()?.to_str()?;
    let version = file.strip_prefix("vmlinuz-")?;
    Some(Path::new("/lib/modules").join(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = include_str!("../fixtures/modules.dep");

    fn index() -> Result<ModuleIndex, Error> {
        let mut i = ModuleIndex::parse_dep(DEP, Path::new("fixtures/modules.dep"))?;
        i.add_builtin("kernel/drivers/block/loop.ko\nkernel/fs/mbcache.ko.xz\n");
        i.add_aliases(
            "alias crc32c crc32c_generic\nalias crc32c crc32c-intel\nalias pci:v00001AF4d* virtio_pci\n",
        );
        Ok(i)
    }

    #[test]
    fn dependencies_come_first() -> Result<(), Error> {
        let r = index()?.resolve(&["ext4", "virtio-blk"]);
        assert_eq!(
            r.load_order,
            [
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko",
            ]
        );
        assert!(r.missing.is_empty() && r.builtin.is_empty(), "{r:?}");
        Ok(())
    }

    #[test]
    fn shared_dependencies_are_loaded_once() -> Result<(), Error> {
        let r = index()?.resolve(&["raid1", "raid10", "md_mod"]);
        assert_eq!(
            r.load_order,
            [
                "kernel/drivers/md/md-mod.ko",
                "kernel/drivers/md/raid1.ko",
                "kernel/drivers/md/raid10.ko",
            ]
        );
        Ok(())
    }

    #[test]
    fn aliases_builtins_and_unknown_names() -> Result<(), Error> {
        let r = index()?.resolve(&["crc32c", "loop", "no_such_module", "mbcache"]);
        assert_eq!(
            r.load_order,
            [
                "kernel/crypto/crc32c_generic.ko",
                "kernel/arch/x86/crypto/crc32c-intel.ko.xz"
            ]
        );
        assert_eq!(r.builtin, ["loop", "mbcache"]);
        assert_eq!(r.missing, ["no_such_module"]);
        let kept: BTreeSet<String> = r.load_order.into_iter().collect();
        assert_eq!(
            index()?.alias_text_for(&kept),
            "alias crc32c crc32c_generic\nalias crc32c crc32c_intel\n"
        );
        Ok(())
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let e = ModuleIndex::parse_dep("a.ko: b.ko\nnonsense\n", Path::new("m.dep"));
        assert_eq!(
            e.map(|_| ()).map_err(|e| e.to_string()),
            Err("m.dep:2: expected `module.ko: deps...`, found \"nonsense\"".to_owned())
        );
    }

    #[test]
    fn the_restricted_dep_file_keeps_only_included_modules() -> Result<(), Error> {
        let i = index()?;
        let keep: BTreeSet<String> = i.resolve(&["raid1"]).load_order.into_iter().collect();
        assert_eq!(
            i.dep_text_for(&keep),
            "kernel/drivers/md/md-mod.ko:\nkernel/drivers/md/raid1.ko: kernel/drivers/md/md-mod.ko\n"
        );
        Ok(())
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
            "crc32c_intel"
        );
        assert_eq!(
            modules_dir_for(Path::new("/boot/vmlinuz-6.1.0-56-amd64")),
            Some(PathBuf::from("/lib/modules/6.1.0-56-amd64"))
        );
    }
}
