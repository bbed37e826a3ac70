//! steward-agent (work in progress).
