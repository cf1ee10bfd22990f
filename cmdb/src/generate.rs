//! eDeploy's `generate()`: expands a model dict with ranges into a list of dicts.
