//! steward-lab (work in progress).
