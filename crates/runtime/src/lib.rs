//! steward-runtime (work in progress).
