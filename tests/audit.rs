//! The audit trail end to end (tests follow in the next commit).
