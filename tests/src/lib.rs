//! Shared helpers for rdeploy's end-to-end tests: locating the workspace's binaries, starting
//! `rdeploy serve` on a loopback port, fixture paths.
