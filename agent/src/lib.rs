//! rdeploy-agent: the IO shell that provisions a machine and upgrades deployed hosts.
//!
//! - [`detect`]: the hardware inventory from `/sys`, `/proc` and DMI (eDeploy's vocabulary);
//! - [`run`]: the provisioning run (upload, configure, install, report, boot action);
//! - [`tree`]: role trees over HTTP: fresh installs and upgrades;
//! - [`tls`]: which server certificates the agent trusts (`--ca`, `rdeploy.ca=`, the
//!   initramfs's `/etc/rdeploy/ca.pem`);
//! - [`testloop`]: PXE Manager's test loop on an installed host (next test, run, upload).

pub mod cli;
pub mod detect;
pub mod run;
pub mod testloop;
pub mod tls;
pub mod tree;
