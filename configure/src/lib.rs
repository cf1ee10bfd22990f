//! rdeploy's configure engine: runs a profile's Rhai `.configure` script against a `Host`.
