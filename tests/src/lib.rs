//! Test support: network namespaces, processes, captures.
