//! steward-pki (work in progress).
